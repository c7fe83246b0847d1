"""Voice sample formats: read the modem's ``AT+VSM=?`` answer, choose one, convert.

``+VSM`` codes above 127 are vendor-specific (USR 128 = 8-bit linear, Agere 128 =
8-bit linear but 130 = u-law ...), so the driver never assumes a code: it parses the
option lines ``<cml>,"<name>",<bits>,<timing>,(<rates>),(<scs>),(<sel>)``, classifies
each by name and bit width, and picks the first encoding of the profile's preference
list available at 8000 Hz (else the nearest rate, resampled with ``audioop.ratecv``).

Conversion to and from our PCM (8 kHz s16le, ``media.frames``) uses stdlib
``audioop`` (Python 3.11): ``bias`` + ``lin2lin`` for 8-bit offset-binary,
``ulaw2lin``/``alaw2lin`` and back, ``ratecv`` for other rates.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from enum import StrEnum

from media.frames import SAMPLE_RATE

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib on 3.11; audioop-lts provides it on 3.13+


class Encoding(StrEnum):
    UNSIGNED8 = "8-bit unsigned linear"  # offset binary, 0x80 = silence
    SIGNED8 = "8-bit signed linear"
    LINEAR16 = "16-bit signed linear"  # little-endian
    ULAW = "u-law"
    ALAW = "A-law"
    UNSUPPORTED = "unsupported"  # ADPCM and anything we cannot name


class FormatError(ValueError):
    """The modem offers no voice format we can use."""


@dataclass(frozen=True, slots=True)
class SampleFormat:
    cml: int  # the +VSM code to send
    name: str
    bits: int
    rates: tuple[tuple[int, int], ...]  # (low, high) ranges; a single rate is (r, r)
    encoding: Encoding

    def supports(self, rate: int) -> bool:
        return any(lo <= rate <= hi for lo, hi in self.rates)

    def nearest_rate(self, rate: int) -> int:
        best = min(self.rates, key=lambda r: min(abs(r[0] - rate), abs(r[1] - rate)))
        return max(best[0], min(best[1], rate))


_VSM_RE = re.compile(r'^\s*(?:\+VSM:\s*)?(\d+)\s*,\s*"([^"]*)"\s*,\s*(\d+)\s*,\s*\d+\s*,\s*\(([^)]*)\)')


def classify(name: str, bits: int) -> Encoding:
    n = name.upper().replace(" ", "").replace("-", "")
    if "ADPCM" in n:
        return Encoding.UNSUPPORTED
    if "ULAW" in n or "MULAW" in n:
        return Encoding.ULAW
    if "ALAW" in n:
        return Encoding.ALAW
    if "LINEAR" in n or "PCM" in n:
        if bits == 16:
            return Encoding.LINEAR16
        if bits == 8:
            signed = "SIGNED" in n and "UNSIGNED" not in n
            return Encoding.SIGNED8 if signed else Encoding.UNSIGNED8
    return Encoding.UNSUPPORTED


def _rates(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit() and (not hi or hi.strip().isdigit()):
            out.append((int(lo), int(hi or lo)))
    return tuple(out)


def parse_vsm_options(lines: list[str] | tuple[str, ...]) -> list[SampleFormat]:
    """The option lines of an ``AT+VSM=?`` answer; other lines are ignored."""
    formats = []
    for line in lines:
        m = _VSM_RE.match(line)
        if m is None:
            continue
        cml, name, bits, rates = int(m.group(1)), m.group(2), int(m.group(3)), _rates(m.group(4))
        if rates:
            formats.append(SampleFormat(cml, name, bits, rates, classify(name, bits)))
    return formats


def choose_format(formats: list[SampleFormat], preference: tuple[Encoding, ...],
                  names: tuple[str, ...] = ()) -> tuple[SampleFormat, int]:
    """(format, sample rate): the first preferred encoding at 8 kHz, else at its nearest rate.

    Several codes can carry the same encoding (USR: 1 "UNSIGNED PCM" and 128 "8-BIT
    LINEAR"); ``names`` (the profile's known-good format names) breaks such ties.
    """
    wanted = [n.upper() for n in names]
    formats = sorted(formats, key=lambda f: wanted.index(f.name.upper()) if f.name.upper() in wanted else len(wanted))
    for encoding in preference:
        for fmt in formats:
            if fmt.encoding is encoding and fmt.supports(SAMPLE_RATE):
                return fmt, SAMPLE_RATE
    for encoding in preference:
        for fmt in formats:
            if fmt.encoding is encoding:
                return fmt, fmt.nearest_rate(SAMPLE_RATE)
    offered = ", ".join(f'{f.cml} "{f.name}"' for f in formats) or "nothing"
    raise FormatError(f"no usable voice format (modem offers {offered})")


class SampleConverter:
    """Modem samples <-> our 8 kHz s16le PCM, streaming (keeps partial samples and ratecv state)."""

    def __init__(self, encoding: Encoding, rate: int = SAMPLE_RATE) -> None:
        if encoding is Encoding.UNSUPPORTED:
            raise FormatError("cannot convert an unsupported encoding")
        self.encoding = encoding
        self.rate = rate
        self.width = 2 if encoding is Encoding.LINEAR16 else 1
        self._carry = b""  # an odd trailing byte of 16-bit input
        self._in_state = None
        self._out_state = None

    def to_pcm(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if self.width == 2 and len(data) % 2:
            data, self._carry = data[:-1], data[-1:]
        if not data:
            return b""
        enc = self.encoding
        if enc is Encoding.LINEAR16:
            pcm = data
        elif enc is Encoding.UNSIGNED8:
            pcm = audioop.lin2lin(audioop.bias(data, 1, -128), 1, 2)
        elif enc is Encoding.SIGNED8:
            pcm = audioop.lin2lin(data, 1, 2)
        elif enc is Encoding.ULAW:
            pcm = audioop.ulaw2lin(data, 2)
        else:
            pcm = audioop.alaw2lin(data, 2)
        if self.rate != SAMPLE_RATE:
            pcm, self._in_state = audioop.ratecv(pcm, 2, 1, self.rate, SAMPLE_RATE, self._in_state)
        return pcm

    def from_pcm(self, pcm: bytes) -> bytes:
        if self.rate != SAMPLE_RATE:
            pcm, self._out_state = audioop.ratecv(pcm, 2, 1, SAMPLE_RATE, self.rate, self._out_state)
        enc = self.encoding
        if enc is Encoding.LINEAR16:
            return pcm
        if enc is Encoding.UNSIGNED8:
            return audioop.bias(audioop.lin2lin(pcm, 2, 1), 1, 128)
        if enc is Encoding.SIGNED8:
            return audioop.lin2lin(pcm, 2, 1)
        if enc is Encoding.ULAW:
            return audioop.lin2ulaw(pcm, 2)
        return audioop.lin2alaw(pcm, 2)


def energy(pcm: bytes) -> int:
    """RMS of s16le PCM (silence watch)."""
    return audioop.rms(pcm, 2) if len(pcm) >= 2 else 0
