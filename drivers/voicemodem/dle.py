"""Voice-mode DLE framing (V.253 / IS-101), both directions. Pure code: no asyncio, no serial.

Inside a voice data state byte 0x10 (``<DLE>``) is an escape (modems.md B.3):

* ``<DLE><DLE>`` is one literal 0x10 audio byte; ``<DLE><SUB>`` is two of them when the
  chipset profile says so (V.253), otherwise it is reported as an unknown code;
* ``<DLE><ETX>`` ends the stream: the decoder stops and keeps whatever followed (the
  ``OK`` that comes next is command-mode text) for ``take_rest()``;
* any other ``<DLE>x`` is an event (DTMF digit, busy, silence, ring ...). IS-101
  shielded DTMF (``<DLE>/ <DLE>5 <DLE>5 ... <DLE>~``) is reported once per keypress.

A ``<DLE>`` that ends one read is held and paired with the first byte of the next, so
escapes split across reads are decoded exactly as unsplit ones.

``DleDecoder(direction=Direction.FROM_DTE)`` decodes what a host writes (used by the
simulator): ``<DLE>!``/``<DLE>^`` stop receive, ``<DLE><CAN>`` abort playback, and so on.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DLE = 0x10
ETX = 0x03
SUB = 0x1A
CAN = 0x18
FS = 0x1C

# What the host (DTE) writes in a voice data state.
DTE_END_TX = b"\x10\x03"  # end of our transmit data; the modem plays out and answers OK
DTE_STOP_RX = b"\x10!"  # stop +VRX/+VTR: the modem answers <DLE><ETX> then OK
DTE_ABORT_TX = b"\x10\x18\x10\x03"  # discard the transmit buffer, then end (mgetty's interrupt)
DCE_END = b"\x10\x03"  # the modem's end of stream

DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_REST = 4096  # bytes kept after <DLE><ETX> until the shell switches back to command mode


class VoiceEvent(StrEnum):
    DTMF = "dtmf"
    BUSY = "busy"
    DIAL_TONE = "dial tone"
    SILENCE = "silence"  # <DLE>s: no voice energy for the +VSD time
    QUIET = "quiet"  # <DLE>q: silence after voice was detected
    RING = "ring"
    RINGBACK = "ringback"
    LOOP_BREAK = "loop current break"
    POLARITY_REVERSAL = "polarity reversal"
    ANSWER_TONE = "answer tone"
    FAX_CALLING = "fax calling tone"
    DATA_CALLING = "data calling tone"
    SIT = "special information tone"
    VOICE = "voice detected"
    CALL_WAITING = "call waiting"
    BONG = "bong tone"
    TDD = "tdd"
    HANDSET_ON_HOOK = "handset on hook"
    HANDSET_OFF_HOOK = "handset off hook"
    UNDERRUN = "transmit underrun"
    OVERRUN = "receive overrun"
    TIMING_MARK = "timing mark"
    XON = "xon"
    XOFF = "xoff"
    INVALID_FORMAT = "invalid voice format"
    LOST_DATA = "lost data"
    END_OF_STREAM = "end of stream"
    # host -> modem only
    STOP_RECEIVE = "stop receive"
    ABORT = "abort"
    VOLUME_UP = "volume up"
    VOLUME_DOWN = "volume down"
    UNKNOWN = "unknown"


class Direction(StrEnum):
    FROM_DCE = "from modem"
    FROM_DTE = "from host"


_DCE_CODES: dict[int, VoiceEvent] = {
    **{ord(c): VoiceEvent.DTMF for c in DTMF_DIGITS},
    ord("a"): VoiceEvent.ANSWER_TONE,
    ord("b"): VoiceEvent.BUSY,
    ord("K"): VoiceEvent.BUSY,
    ord("c"): VoiceEvent.FAX_CALLING,
    ord("m"): VoiceEvent.FAX_CALLING,
    ord("d"): VoiceEvent.DIAL_TONE,
    ord("i"): VoiceEvent.DIAL_TONE,
    ord("e"): VoiceEvent.DATA_CALLING,
    ord("f"): VoiceEvent.DATA_CALLING,
    ord("h"): VoiceEvent.HANDSET_ON_HOOK,
    ord("p"): VoiceEvent.HANDSET_ON_HOOK,
    ord("H"): VoiceEvent.HANDSET_OFF_HOOK,
    ord("P"): VoiceEvent.HANDSET_OFF_HOOK,
    ord("l"): VoiceEvent.LOOP_BREAK,
    ord("L"): VoiceEvent.POLARITY_REVERSAL,
    ord("J"): VoiceEvent.SIT,
    ord("q"): VoiceEvent.QUIET,
    ord("s"): VoiceEvent.SILENCE,
    ord("r"): VoiceEvent.RINGBACK,
    ord("R"): VoiceEvent.RING,
    ord("t"): VoiceEvent.TDD,
    ord("u"): VoiceEvent.UNDERRUN,
    ord("o"): VoiceEvent.OVERRUN,
    ord("v"): VoiceEvent.VOICE,
    ord("V"): VoiceEvent.VOICE,
    ord("w"): VoiceEvent.CALL_WAITING,
    ord("$"): VoiceEvent.BONG,
    ord("T"): VoiceEvent.TIMING_MARK,
    ord("Q"): VoiceEvent.XON,
    ord("S"): VoiceEvent.XOFF,
    ord("E"): VoiceEvent.INVALID_FORMAT,
    ord("Y"): VoiceEvent.LOST_DATA,
}

_DTE_CODES: dict[int, VoiceEvent] = {
    ord("!"): VoiceEvent.STOP_RECEIVE,
    ord("^"): VoiceEvent.STOP_RECEIVE,  # Zoom/Conexant variant
    CAN: VoiceEvent.ABORT,
    FS: VoiceEvent.ABORT,
    ord("u"): VoiceEvent.VOLUME_UP,
    ord("d"): VoiceEvent.VOLUME_DOWN,
}


@dataclass(frozen=True, slots=True)
class Audio:
    data: bytes  # unshielded samples in the modem's format


@dataclass(frozen=True, slots=True)
class DleEvent:
    kind: VoiceEvent
    code: str  # the character after <DLE> ("5", "b", "\x03" ...); the digit for DTMF


VoiceItem = Audio | DleEvent


def shield(audio: bytes) -> bytes:
    """Audio bytes ready for a voice transmit state: every 0x10 doubled."""
    return audio.replace(b"\x10", b"\x10\x10")


class DleDecoder:
    """Bytes of a voice data state -> ``Audio`` and ``DleEvent`` items, in order."""

    def __init__(self, *, direction: Direction = Direction.FROM_DCE, sub_is_two_dles: bool = True) -> None:
        self._codes = _DCE_CODES if direction is Direction.FROM_DCE else _DTE_CODES
        self._from_dce = direction is Direction.FROM_DCE
        self._sub_is_two_dles = sub_is_two_dles
        self._pending_dle = False
        self._tone_group: str | None = None  # inside <DLE>/ ... <DLE>~: "" until the digit arrives
        self._rest = bytearray()
        self.ended = False
        self.audio_bytes = 0
        self.events = 0

    def take_rest(self) -> bytes:
        """Bytes that followed ``<DLE><ETX>`` (command-mode text); clears them."""
        rest = bytes(self._rest)
        self._rest.clear()
        return rest

    def feed(self, data: bytes) -> list[VoiceItem]:
        out: list[VoiceItem] = []
        if self.ended:
            self._keep_rest(data)
            return out
        audio = bytearray()
        pos, n = 0, len(data)
        while pos < n:
            if self._pending_dle:
                self._pending_dle = False
                code = data[pos]
                pos += 1
                if code == ETX:
                    self._flush(audio, out)
                    self.ended = True
                    self.events += 1
                    out.append(DleEvent(VoiceEvent.END_OF_STREAM, "\x03"))
                    self._keep_rest(data[pos:])
                    return out
                self._escape(code, audio, out)
                continue
            idx = data.find(DLE, pos)
            if idx < 0:
                audio += data[pos:]
                break
            audio += data[pos:idx]
            self._pending_dle = True
            pos = idx + 1
        self._flush(audio, out)
        return out

    def _escape(self, code: int, audio: bytearray, out: list[VoiceItem]) -> None:
        if code == DLE:
            audio.append(DLE)
            return
        if code == SUB and self._sub_is_two_dles:
            audio += b"\x10\x10"
            return
        self._flush(audio, out)
        char = chr(code)
        if self._from_dce and char == "/":
            self._tone_group = ""
            return
        if self._from_dce and char == "~":
            self._tone_group = None
            return
        kind = self._codes.get(code, VoiceEvent.UNKNOWN)
        if kind is VoiceEvent.DTMF and self._tone_group is not None:
            if self._tone_group == char:
                return  # the same key still held: repeats every ~70 ms
            self._tone_group = char
        self.events += 1
        out.append(DleEvent(kind, char))

    def _flush(self, audio: bytearray, out: list[VoiceItem]) -> None:
        if audio:
            self.audio_bytes += len(audio)
            out.append(Audio(bytes(audio)))
            audio.clear()

    def _keep_rest(self, data: bytes) -> None:
        self._rest += data
        if len(self._rest) > MAX_REST:
            del self._rest[: len(self._rest) - MAX_REST]
