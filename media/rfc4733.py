"""RFC 4733 telephone-event payloads (DTMF over RTP): codec and per-event de-duplication.

Pure code. An event is one RTP timestamp: the sender repeats packets (growing
duration, then three end packets) with the same timestamp, so a digit is reported
once, when the first packet of a new timestamp arrives.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

EVENT_CODES = "0123456789*#ABCD"  # event 0-15 (RFC 4733 §3.2)
END_PACKETS = 3  # §2.5.1.4: the end packet is sent three times
PAYLOAD_SIZE = 4
_FMT = struct.Struct("!BBH")


class MalformedEvent(ValueError):
    """A telephone-event payload we cannot use."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    digit: str
    end: bool
    volume: int  # 0..63, dBm0 below 0
    duration: int  # in timestamp units (1/8000 s)


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < PAYLOAD_SIZE:
        raise MalformedEvent(f"telephone-event payload of {len(payload)} bytes")
    event, flags, duration = _FMT.unpack_from(payload)
    if event >= len(EVENT_CODES):
        raise MalformedEvent(f"telephone-event {event} is not DTMF")
    return TelephoneEvent(EVENT_CODES[event], bool(flags & 0x80), flags & 0x3F, duration)


def encode_event(digit: str, *, end: bool, duration: int, volume: int = 10) -> bytes:
    code = EVENT_CODES.index(digit.upper())
    return _FMT.pack(code, (0x80 if end else 0) | (volume & 0x3F), min(duration, 0xFFFF))


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each exactly once."""

    __slots__ = ("_last_ts", "digits")

    def __init__(self) -> None:
        self._last_ts: int | None = None
        self.digits = 0

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        """The digit when this packet starts a new event, else None. Raises MalformedEvent."""
        event = parse_event(payload)
        if timestamp == self._last_ts:
            return None
        self._last_ts = timestamp
        self.digits += 1
        return event.digit


def event_packets(digit: str, duration_ms: int = 100, interval_ms: int = 20) -> list[tuple[bool, bytes]]:
    """The (marker, payload) sequence for one digit, paced every ``interval_ms``.

    Marker only on the first packet; the last payload (the end) repeated three times.
    """
    step = 8 * interval_ms
    total = max(step, 8 * duration_ms)
    out: list[tuple[bool, bytes]] = []
    elapsed = step
    while elapsed < total:
        out.append((not out, encode_event(digit, end=False, duration=elapsed)))
        elapsed += step
    end = encode_event(digit, end=True, duration=total)
    out.extend((not out and i == 0, end) for i in range(END_PACKETS))
    return out
