"""Unsolicited result codes -> typed items, pure code. Every vendor spelling lands here."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from drivers.at.channel import Urc
from drivers.gsm.profiles import ModemProfile


@dataclass(frozen=True, slots=True)
class Ring:
    kind: str  # "VOICE" (RING, +CRING: VOICE), "FAX", "GPRS ..."


@dataclass(frozen=True, slots=True)
class Clip:
    number: str | None
    toa: int | None
    validity: int  # 0 valid, 1 withheld, 2 unavailable
    alpha: str | None


@dataclass(frozen=True, slots=True)
class CallProgress:
    stage: str  # "orig" | "alerting" | "connected"
    index: int | None


@dataclass(frozen=True, slots=True)
class CallEnd:
    source: str  # "^CEND" | "VOICE CALL: END" | "NO CARRIER" | "BUSY" | "NO ANSWER" | "MISSED_CALL" | "HANGUP"
    index: int | None = None
    duration_s: int | None = None
    end_status: int | None = None
    cause: int | None = None  # 3GPP cc cause: 16 normal, 17 busy, 19 no answer, 21 rejected


@dataclass(frozen=True, slots=True)
class CallStatus:
    """One call's state: a ``+CLCC`` line (polled, or SIMCom's AT+CLCC=1 URC) or a ``^DSCI`` URC."""

    index: int
    direction: int  # 0 MO, 1 MT
    stat: int  # +CLCC numbering: 0 active, 1 held, 2 dialing, 3 alerting, 4 incoming, 5 waiting, 6 released
    number: str | None
    source: str = "+CLCC"  # "+CLCC" | "^DSCI"


@dataclass(frozen=True, slots=True)
class NewSms:
    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class StatusStored:
    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class SmsPdu:
    kind: str  # "+CMT" (deliver) | "+CDS" (status report)
    pdu: str | None


@dataclass(frozen=True, slots=True)
class UssdLine:
    text: str


@dataclass(frozen=True, slots=True)
class Signal:
    rssi: int


@dataclass(frozen=True, slots=True)
class Registration:
    stat: int
    lac: str | None = None
    ci: str | None = None


@dataclass(frozen=True, slots=True)
class PinState:
    state: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class MemoryFull:
    storage: str


@dataclass(frozen=True, slots=True)
class Noise:
    text: str


@dataclass(frozen=True, slots=True)
class Unknown:
    text: str


UrcItem = (Ring | Clip | CallProgress | CallEnd | CallStatus | NewSms | StatusStored | SmsPdu | UssdLine | Signal
           | Registration | PinState | Dtmf | MemoryFull | Noise | Unknown)

_INT = r"\s*(-?\d+)\s*"

# ^DSCI <stat> (Quectel EC2x / SIMCom after AT^DSCI=1, modems.md A.7) -> +CLCC <stat>. The
# numbering differs from +CLCC: 2 originating, 3 connected (chan_quectel), 6 released; 7 is
# alerting in public Quectel driver code (not in modems.md); 1 held, 4 incoming, 5 waiting.
_DSCI_TO_CLCC = {1: 1, 2: 2, 3: 0, 4: 4, 5: 5, 6: 6, 7: 3}
_DSCI_VOICE = 0  # <type>: only voice calls are ours


def _ints(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip().strip('"')
        out.append(int(part) if re.fullmatch(r"-?\d+", part) else None)
    return out


def _fields(text: str) -> list[str]:
    """Split on commas outside quotes; quotes removed; empty fields kept."""
    return [f.strip() for f in next(csv.reader([text.strip()], skipinitialspace=True))] if text.strip() else []


def parse(urc: Urc, profile: ModemProfile) -> UrcItem:
    t = urc.text
    if t.startswith(profile.noise_prefixes):
        m = re.match(r"\^RSSI:\s*(\d+)", t)
        return Signal(int(m.group(1))) if m else Noise(t)
    if t == "RING":
        return Ring("VOICE")
    if t.startswith("+CRING:"):
        return Ring(t[7:].strip())
    if t.startswith("+CLIP:") or t.startswith("+CCWA:"):
        f = _fields(t[6:])
        number = f[0] if f and f[0] else None
        toa = int(f[1]) if len(f) > 1 and f[1].isdigit() else None
        validity = int(f[5]) if len(f) > 5 and f[5].isdigit() else (0 if number else 2)
        alpha = f[4] if len(f) > 4 and f[4] else None
        return Clip(number if validity == 0 else None, toa, validity, alpha)
    if t.startswith("^ORIG:"):
        return CallProgress("orig", _ints(t[6:])[0])
    if t.startswith("^CONF:"):
        return CallProgress("alerting", _ints(t[6:])[0])
    if t.startswith("^CONN:"):
        return CallProgress("connected", _ints(t[6:])[0])
    if t.startswith("VOICE CALL: BEGIN"):
        return CallProgress("connected", None)
    if t.startswith("^CEND:"):
        v = _ints(t[6:]) + [None] * 4
        return CallEnd("^CEND", v[0], v[1], v[2], v[3])
    if t.startswith("VOICE CALL: END"):
        digits = re.sub(r"\D", "", t[len("VOICE CALL: END"):])
        return CallEnd("VOICE CALL: END", duration_s=_duration(digits))
    if t in ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"):
        return CallEnd(t, cause={"BUSY": 17, "NO ANSWER": 19}.get(t))
    if t.startswith("MISSED_CALL:"):
        return CallEnd("MISSED_CALL")
    if t.startswith("HANGUP:"):
        return CallEnd("HANGUP", _ints(t[7:])[0])
    if t.startswith("+CLCC:"):
        f = _fields(t[6:])
        v = _ints(",".join(f[:5]))
        if len(v) >= 3 and None not in v[:3]:
            return CallStatus(v[0], v[1], v[2], (f[5] or None) if len(f) > 5 else None)  # type: ignore[arg-type]
        return Unknown(t)
    if t.startswith("^DSCI:"):
        return _dsci(t)
    if t.startswith("+CMTI:") or t.startswith("+CDSI:"):
        m = re.match(r'^\+\w+:\s*"?([^",]*)"?\s*,' + _INT + "$", t)
        if m is None:
            return Unknown(t)
        cls = NewSms if t.startswith("+CMTI:") else StatusStored
        return cls(m.group(1), int(m.group(2)))
    if t.startswith("+CMT:"):
        return SmsPdu("+CMT", urc.body)
    if t.startswith("+CDS:"):
        return SmsPdu("+CDS", urc.body)
    if t.startswith("+CUSD:"):
        return UssdLine(t)
    if t.startswith(("+CREG:", "+CGREG:", "+CEREG:")):
        f = _fields(t.split(":", 1)[1])
        # URC form: <stat>[,<lac>,<ci>[,<act>]]; read form starts with <n> (not expected here)
        stat = int(f[0]) if f and f[0].isdigit() else -1
        return Registration(stat, f[1] if len(f) > 2 else None, f[2] if len(f) > 2 else None)
    if t.startswith("+CPIN:"):
        return PinState(t[6:].strip())
    if t.startswith(("+DTMF:", "+RXDTMF:", "+QTONEDET:")):
        head, _, rest = t.partition(":")
        f = [x.strip() for x in rest.split(",")]
        digit = f[0]
        if head == "+QTONEDET" and digit.isdigit():
            digit = chr(int(digit))  # Quectel reports the ASCII code
        dur = int(f[1]) if len(f) > 1 and f[1].isdigit() else None
        return Dtmf(digit, dur)
    if t.startswith("^SMMEMFULL") or (t.startswith("+CIEV:") and "SMSFULL" in t.upper() and t.rstrip().endswith("1")):
        m = re.search(r'"(\w+)"', t)
        return MemoryFull(m.group(1) if m and m.group(1) != "SMSFULL" else "SM")
    if t.startswith(profile.urc_prefixes):
        return Noise(t)
    return Unknown(t)


def _dsci(t: str) -> CallStatus | Noise | Unknown:
    """``^DSCI: <id>,<dir>,<stat>,<type>,<number>,<toa>`` (the number quoted or not)."""
    f = _fields(t[6:])
    v = _ints(",".join(f[:4]))
    if len(v) < 4 or None in v or v[2] not in _DSCI_TO_CLCC:
        return Unknown(t)
    if v[3] != _DSCI_VOICE:
        return Noise(t)
    return CallStatus(v[0], v[1], _DSCI_TO_CLCC[v[2]], (f[4] or None) if len(f) > 4 else None,  # type: ignore[arg-type]
                      source="^DSCI")


def _duration(digits: str) -> int | None:
    if not digits:
        return None
    if len(digits) == 6:  # HHMMSS as SIM7600 prints it
        return int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:])
    return int(digits)
