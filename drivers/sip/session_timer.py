"""Session timers (RFC 4028), UAS side, only when the caller asks for them. Pure code.

An INVITE with ``Session-Expires`` gets the interval back in our 200 (422 with Min-SE
when it is below ours). The caller refreshes unless it named us (``refresher=uas``).
The call then arms one timer: as the refresher, a re-INVITE at half the interval;
otherwise a BYE if no refresh arrived by ``interval - min(32, interval / 3)`` (§10).
"""
from __future__ import annotations

from dataclasses import dataclass

from drivers.sip.errors import SipSyntaxError
from drivers.sip.message import SipRequest
from drivers.sip.uri import is_digits, parse_params

MIN_SE_S = 90  # RFC 4028 §4: the smallest Min-SE; shorter sessions would mean a refresh every 45 s


class SessionIntervalTooSmall(Exception):
    """Answer 422 with ``Min-SE: min_se``."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below {min_se}")
        self.min_se = min_se


@dataclass(frozen=True, slots=True)
class SessionTimer:
    interval: int  # seconds
    we_refresh: bool  # refresher=uas: we send the re-INVITEs
    peer_supports: bool  # "timer" in the caller's Supported: we may Require it in the 200

    @property
    def refresh_after(self) -> float:
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        return self.interval - min(32.0, self.interval / 3)

    def response_headers(self) -> tuple[tuple[str, str], ...]:
        who = "uas" if self.we_refresh else "uac"
        headers: tuple[tuple[str, str], ...] = (("Session-Expires", f"{self.interval};refresher={who}"),)
        if self.peer_supports:
            headers += (("Require", "timer"),)
        return headers


def session_timer_for(request: SipRequest, min_se: int | None = None) -> SessionTimer | None:
    """The timer a (re-)INVITE or UPDATE asks for; None when it asks for none.

    Raises SipSyntaxError for an unreadable header, SessionIntervalTooSmall for 422.
    """
    value = request.headers.get("Session-Expires")
    if value is None:
        return None
    min_se = MIN_SE_S if min_se is None else min_se
    number, _, params_text = value.partition(";")
    number = number.strip()
    if not is_digits(number):
        raise SipSyntaxError(f"bad Session-Expires {value!r}")
    interval = int(number)
    if interval < min_se:
        raise SessionIntervalTooSmall(max(min_se, _min_se_of(request)))
    refresher = dict(parse_params(params_text)).get("refresher")
    supported = {t.strip().lower() for t in request.headers.get_all("Supported")}
    return SessionTimer(interval, refresher == "uas", "timer" in supported)


def _min_se_of(request: SipRequest) -> int:
    text = (request.headers.get("Min-SE") or "").split(";")[0].strip()
    return int(text) if is_digits(text) else 0
