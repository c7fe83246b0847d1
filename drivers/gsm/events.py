"""Typed events a GSM line reports to its owner (frozen dataclasses; dicts only at the edges)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ModemReady:
    line_id: str
    port: str
    imei: str
    iccid: str | None
    manufacturer: str | None
    model: str | None
    operator: str | None
    rssi: int | None


@dataclass(frozen=True, slots=True)
class ModemLost:
    line_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class SignalChanged:
    line_id: str
    rssi: int  # 0-31, 99 unknown
    dbm: int | None  # -113 + 2*rssi


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    line_id: str
    stat: int  # 0 not registered, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming
    lac: str | None = None
    ci: str | None = None


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    line_id: str
    call_id: str
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MissedCall:
    line_id: str
    caller: str | None
    presentation: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    line_id: str
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class SmsReceived:
    line_id: str
    sender: str
    text: str
    timestamp: datetime
    parts: int
    complete: bool
    raw_pdus: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SmsUndecodable:
    line_id: str
    raw_pdu: str
    reason: str
    storage: str | None
    index: int | None


@dataclass(frozen=True, slots=True)
class SmsSent:
    line_id: str
    message_id: str
    destination: str
    references: tuple[int, ...]  # one TP-MR per part


@dataclass(frozen=True, slots=True)
class SmsSendFailed:
    line_id: str
    message_id: str
    destination: str
    reason: str


@dataclass(frozen=True, slots=True)
class SmsStatus:
    line_id: str
    mr: int
    recipient: str
    status: int  # TP-ST
    outcome: str  # delivered | pending | failed
    discharge: datetime
    message_id: str | None  # ours, when the report matched a message we sent


@dataclass(frozen=True, slots=True)
class UssdReply:
    line_id: str
    status: int
    text: str
    dcs: int | None


def dbm(rssi: int) -> int | None:
    return None if rssi == 99 or rssi < 0 else -113 + 2 * min(rssi, 31)
