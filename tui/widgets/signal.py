"""GSM signal strength (+CSQ 0-31, 99 unknown) as four bars."""
from __future__ import annotations

from rich.text import Text

BARS = "▂▄▆█"
# +CSQ thresholds for 1..4 bars (rssi = -113 + 2*csq dBm): <=1 is no usable signal,
# 2-9 marginal (< -95 dBm), 10-14 ok, 15-19 good, >=20 excellent (> -73 dBm)
THRESHOLDS = (2, 10, 15, 20)


def bar_count(signal: int | None) -> int | None:
    if signal is None or signal == 99 or not 0 <= signal <= 31:
        return None
    return sum(1 for t in THRESHOLDS if signal >= t)


def signal_bars(signal: int | None) -> Text:
    n = bar_count(signal)
    if n is None:
        return Text("····", style="dim")
    colour = "red" if n <= 1 else "yellow" if n == 2 else "green"
    text = Text(BARS[:n], style=colour)
    text.append("·" * (4 - n), style="dim")
    return text


def dbm(signal: int | None) -> str:
    return "-" if bar_count(signal) is None else f"{-113 + 2 * signal} dBm"  # type: ignore[operator]
