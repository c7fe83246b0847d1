"""``[[analog]]`` configuration tables -> a validated, frozen ``AnalogConfig``.

    [[analog]]
    port = "/dev/ttyACM0"        # or usb = "0572:1329" (+ usb_interface)
    profile = "auto"             # auto | v253 | conexant | usr5637 | rockwell | agere
    caller_id = "formatted"      # formatted (+VCID=1) | raw (+VCID=2, checksum verified here)
    line = 0                     # line id "analog:0"
    silence_hangup_s = 30        # quiet after speech this long = the caller has gone
    withhold_prefix = "141"      # dialled before the number when caller ID is to be withheld (US: "*67")
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from drivers.serial_port import resolve_port
from drivers.voicemodem.modem import ModemSettings
from drivers.voicemodem.profiles import PROFILES, VoiceModemProfile
from drivers.voicemodem.state import LONG_SILENCE_S

_CALLER_ID_MODES = ("formatted", "raw")


@dataclass(frozen=True, slots=True)
class AnalogConfig:
    port: str | None = None
    usb: str | None = None  # "VID:PID" when the tty name is not stable
    usb_interface: int | None = None
    profile: str = "auto"
    caller_id: str = "formatted"
    line: int = 0
    silence_hangup_s: float = LONG_SILENCE_S
    withhold_prefix: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnalogConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown [[analog]] keys: {', '.join(sorted(unknown))}")
        try:
            cfg = cls(
                port=str(d["port"]) if d.get("port") else None,
                usb=str(d["usb"]) if d.get("usb") else None,
                usb_interface=int(d["usb_interface"]) if d.get("usb_interface") is not None else None,
                profile=str(d.get("profile", "auto")).lower(),
                caller_id=str(d.get("caller_id", "formatted")).lower(),
                line=int(d.get("line", 0)),
                silence_hangup_s=float(d.get("silence_hangup_s", LONG_SILENCE_S)),
                withhold_prefix=str(d["withhold_prefix"]) if d.get("withhold_prefix") else None,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[[analog]]: {exc}") from None
        if not cfg.port and not cfg.usb:
            raise ValueError("[[analog]] needs port= or usb=")
        if cfg.profile != "auto" and cfg.profile not in PROFILES:
            raise ValueError(f"[[analog]] profile must be auto or one of {', '.join(PROFILES)}, not {cfg.profile!r}")
        if cfg.caller_id not in _CALLER_ID_MODES:
            raise ValueError(f"[[analog]] caller_id must be formatted or raw, not {cfg.caller_id!r}")
        if cfg.withhold_prefix is not None and cfg.withhold_prefix.strip("0123456789*#"):
            raise ValueError(f"[[analog]] withhold_prefix must be dial digits (0-9 * #), not {cfg.withhold_prefix!r}")
        if cfg.silence_hangup_s <= 0:
            raise ValueError("[[analog]] silence_hangup_s must be positive")
        return cfg

    @property
    def line_id(self) -> str:
        return f"analog:{self.line}"

    def chipset(self) -> VoiceModemProfile | None:
        """The configured profile; None means detect it from ``ATI0``."""
        return None if self.profile == "auto" else PROFILES[self.profile]

    def settings(self) -> ModemSettings:
        return ModemSettings(caller_id_raw=self.caller_id == "raw", long_silence_s=self.silence_hangup_s)

    def resolve(self) -> str:
        """The device path to open now (a USB modem may come back under another name)."""
        return resolve_port(port=self.port, usb=self.usb, interface=self.usb_interface)
