"""AT line framer: raw bytes from a modem port -> ``Line`` and ``Prompt`` items.

Pure code (no asyncio, no serial), shared by the GSM driver, the analog voice modem
driver and the simulators. It survives what real modems send (modems.md A.1):

* any run of CR/LF ends a line; empty lines are noise, never "response finished";
* the echo of a command (``AT+CGMI\\r`` before ``\\r\\n``) comes out as an ordinary line
  unless ``expect_echo()`` named it, in which case it is dropped once;
* the SMS prompt ``> `` has no terminator and is emitted as soon as it is complete;
  SIMCom's ``>\\r\\n`` variant is recognised too;
* reads split anywhere (one byte at a time is fine);
* garbage: NULs and other control bytes are removed, undecodable bytes become U+FFFD,
  and a "line" longer than ``MAX_BUFFER`` without a terminator is discarded (resync);
* a ``+CUSD:`` reply whose quoted string contains raw newlines is joined back into one
  line (``\\n`` inside the text) until its closing quote.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

_TERMINATORS = b"\r\n"
# Control bytes that never belong to AT text: removed before decoding. 0x1A (^Z) and
# 0x1B (ESC) show up when a modem echoes the end of an SMS PDU.
_DROP = bytes(b for b in range(32) if b not in (0x09,)) + b"\x7f"
_CONTINUED_PREFIXES = ("+CUSD:",)


@dataclass(frozen=True, slots=True)
class Line:
    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The bare ``> `` a modem sends after ``AT+CMGS`` / ``AT+CUSD`` text entry."""


class AtFramer:
    MAX_BUFFER = 4096

    def __init__(self) -> None:
        self._buf = bytearray()
        self._held: str | None = None  # a +CUSD line waiting for its closing quote
        self._echo: list[str] = []
        self.discarded_bytes = 0

    def expect_echo(self, command: str) -> None:
        """The next line equal to ``command`` (ignoring case and spaces) is an echo: drop it."""
        key = _echo_key(command)
        if key:
            self._echo.append(key)
            del self._echo[:-4]  # echoes come back at once; never let this grow

    def clear_echo(self) -> None:
        self._echo.clear()

    def feed(self, data: bytes) -> list[Line | Prompt]:
        out: list[Line | Prompt] = []
        self._buf += data
        while True:
            idx = _first_terminator(self._buf)
            if idx < 0:
                break
            raw = bytes(self._buf[:idx])
            end = idx
            while end < len(self._buf) and self._buf[end] in _TERMINATORS:
                end += 1
            del self._buf[:end]
            self._emit(raw, out)
        if self._buf == b"> ":
            self._buf.clear()
            out.append(Prompt())
        elif len(self._buf) > self.MAX_BUFFER:
            log.warning("discarding %d bytes without a line end (garbage on the port?)", len(self._buf))
            self.discarded_bytes += len(self._buf)
            self._buf.clear()
        return out

    def _emit(self, raw: bytes, out: list[Line | Prompt]) -> None:
        text = raw.translate(None, _DROP).decode("utf-8", errors="replace").strip()
        if self._held is not None:
            if not text:
                return
            self._held += "\n" + text
            if self._held.count('"') % 2 == 0 or len(self._held) > self.MAX_BUFFER:
                text, self._held = self._held, None
                out.append(Line(text))
            return
        if not text:
            return
        if text == ">":
            out.append(Prompt())
            return
        if self._echo and _echo_key(text) == self._echo[0]:
            self._echo.pop(0)
            return
        if text.startswith(_CONTINUED_PREFIXES) and text.count('"') % 2 == 1:
            self._held = text
            return
        out.append(Line(text))


def _first_terminator(buf: bytearray) -> int:
    cr, lf = buf.find(b"\r"), buf.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def _echo_key(text: str) -> str:
    return "".join(text.split()).upper().rstrip("\x1a")
