"""GSM 03.38 / TS 23.038 default 7-bit alphabet, extension table, and septet packing."""
from __future__ import annotations

ESC = 0x1B

DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(DEFAULT) == 128

EXTENSION = {0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}

_ENCODE = {ch: i for i, ch in enumerate(DEFAULT) if i != ESC}
_ENCODE_EXT = {ch: code for code, ch in EXTENSION.items()}


def can_encode(text: str) -> bool:
    return all(ch in _ENCODE or ch in _ENCODE_EXT for ch in text)


def to_septets(text: str) -> list[int]:
    """Text -> septet values (extension characters cost two). Raises ValueError if impossible."""
    out: list[int] = []
    for ch in text:
        if ch in _ENCODE:
            out.append(_ENCODE[ch])
        elif ch in _ENCODE_EXT:
            out += (ESC, _ENCODE_EXT[ch])
        else:
            raise ValueError(f"{ch!r} is not in the GSM 7-bit alphabet")
    return out


def septet_count(text: str) -> int:
    return len(to_septets(text))


def from_septets(septets: list[int] | bytes) -> str:
    """Septet values -> text. An unknown escape decodes as a space (what phones show)."""
    out: list[str] = []
    escaped = False
    for s in septets:
        s &= 0x7F
        if escaped:
            out.append(EXTENSION.get(s, " "))
            escaped = False
        elif s == ESC:
            escaped = True
        else:
            out.append(DEFAULT[s])
    return "".join(out)


def pack(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB-first into octets, after ``fill_bits`` zero bits (UDH alignment)."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """Unpack ``count`` septets from ``data``, skipping ``fill_bits`` leading bits."""
    value = int.from_bytes(data, "little")
    value >>= fill_bits
    available = (len(data) * 8 - fill_bits) // 7
    return [(value >> (7 * i)) & 0x7F for i in range(min(count, available))]
