"""USSD request encoding and ``+CUSD`` reply decoding (modems.md A.10), pure code.

The reply DCS is a Cell Broadcast data coding scheme (TS 23.038 section 5), decoded by
bit groups: 15 (0x0F) is GSM 7-bit, 72 (0x48) UCS-2, 17 (0x11) UCS-2 after a language
prefix, 68 (0x44) 8-bit. A GSM 7-bit string can arrive three ways: packed hex
(Huawei), unpacked hex (``+CSCS="HEX"``, some Qualcomm), or plain text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.gsm import gsm7

_CUSD_RE = re.compile(r'^\+CUSD:\s*(\d+)\s*(?:,\s*"(.*)"\s*(?:,\s*(\d+))?)?\s*$', re.DOTALL)
_HEX_RE = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")

STATUS_TEXT = {0: "done", 1: "more input required", 2: "terminated by network",
               3: "answered by another client", 4: "not supported", 5: "network timeout"}


@dataclass(frozen=True, slots=True)
class UssdResult:
    status: int  # +CUSD <m>: 0 done, 1 menu (reply expected), 2 released, 4 unsupported, 5 timeout
    text: str
    dcs: int | None


def encode_request(code: str, *, packed: bool) -> str:
    """The string for ``AT+CUSD=1,"<here>",15``: plain, or packed GSM 7-bit hex (Huawei)."""
    if not packed:
        return code
    septets = gsm7.to_septets(code)
    if len(septets) % 8 == 7:  # 7 spare bits would read as '@': pad with CR (TS 23.038 6.1.2.3.1)
        septets.append(0x0D)
    return gsm7.pack(septets).hex().upper()


def cbs_alphabet(dcs: int) -> str:
    """'gsm7' | 'ucs2' | 'ucs2-lang' | '8bit' for a Cell Broadcast / USSD DCS."""
    group = dcs >> 4
    if group in (0x0, 0x2, 0x3):
        return "gsm7"
    if group == 0x1:
        return "ucs2-lang" if dcs == 0x11 else "gsm7"
    if 0x4 <= group <= 0x7 or group == 0x9:
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


def _unpack_hex(data: bytes) -> str:
    septets = gsm7.unpack(data, len(data) * 8 // 7)
    if len(data) * 8 % 7 == 0 and septets and septets[-1] in (0x0D, 0x00):
        septets = septets[:-1]  # padding septet
    return gsm7.from_septets(septets)


def decode_text(text: str, dcs: int | None, *, packed_hint: bool = False) -> str:
    alphabet = cbs_alphabet(dcs if dcs is not None else 0x0F)
    is_hex = bool(_HEX_RE.match(text))
    if alphabet in ("ucs2", "ucs2-lang") and is_hex:
        data = bytes.fromhex(text)
        if alphabet == "ucs2-lang":
            data = data[2:]
        return data.decode("utf-16-be", errors="replace")
    if alphabet == "8bit" and is_hex:
        return bytes.fromhex(text).decode("latin-1")
    if alphabet == "gsm7" and is_hex:
        data = bytes.fromhex(text)
        if not packed_hint and all(0x20 <= b < 0x7F or b in (0x0A, 0x0D) for b in data):
            return data.decode("ascii")  # unpacked GSM/ASCII bytes in hex
        return _unpack_hex(data)
    return text


def parse_cusd(line: str, *, packed_hint: bool = False) -> UssdResult | None:
    m = _CUSD_RE.match(line)
    if m is None:
        return None
    status = int(m.group(1))
    dcs = int(m.group(3)) if m.group(3) else None
    raw = m.group(2)
    return UssdResult(status, decode_text(raw, dcs, packed_hint=packed_hint) if raw is not None else "", dcs)
