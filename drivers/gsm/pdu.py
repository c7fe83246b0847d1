"""SMS PDU codec (TS 23.040 / 23.038): our own decoder and encoder, pure code.

Decodes SMS-DELIVER, SMS-SUBMIT and SMS-STATUS-REPORT (hex with the SMSC prefix, as
``+CMGR``/``+CMT``/``+CDS`` give it) and encodes SMS-SUBMIT (split into parts, UCS-2
when the text does not fit GSM 7-bit) plus DELIVER / STATUS-REPORT for the simulator.
UCS-2 is read as UTF-16, so emoji (surrogate pairs) survive; for multi-part messages
the raw payload bytes are kept so that the reassembler joins bytes before decoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from drivers.gsm import gsm7


class PduError(ValueError):
    """The PDU is malformed or truncated; the raw hex must be kept by the caller."""


@dataclass(frozen=True, slots=True)
class Concat:
    ref: int
    total: int
    seq: int
    iei: int  # 0x00 (8-bit reference) or 0x08 (16-bit reference)


@dataclass(frozen=True, slots=True)
class UserData:
    encoding: str  # "gsm7" | "ucs2" | "8bit"
    text: str
    payload: bytes  # UCS-2/8-bit octets, or septet values for GSM-7 (header removed)
    udl: int  # as on the wire: septets (GSM-7, header included) or octets
    concat: Concat | None
    headers: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class Deliver:
    smsc: str | None
    sender: str
    sender_toa: int
    pid: int
    dcs: int
    timestamp: datetime
    ud: UserData
    more_messages: bool

    @property
    def text(self) -> str:
        return self.ud.text


@dataclass(frozen=True, slots=True)
class Submit:
    smsc: str | None
    mr: int
    destination: str
    destination_toa: int
    pid: int
    dcs: int
    status_report: bool
    ud: UserData

    @property
    def text(self) -> str:
        return self.ud.text


@dataclass(frozen=True, slots=True)
class StatusReport:
    smsc: str | None
    mr: int
    recipient: str
    scts: datetime
    discharge: datetime
    status: int

    @property
    def outcome(self) -> str:
        """"delivered" | "pending" (SC still trying) | "failed" (permanent or SC gave up)."""
        if self.status <= 0x1F:
            return "delivered"
        if self.status <= 0x3F:
            return "pending"
        return "failed"


@dataclass(frozen=True, slots=True)
class OutgoingPdu:
    hex: str  # SMSC prefix + TPDU, upper case
    tpdu_length: int  # the number AT+CMGS wants (SMSC prefix excluded)


# ---------------------------------------------------------------- helpers ----
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PduError(f"PDU too short reading {what} (need {n} octets at {self.pos}, have {len(self.data)})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]


def _bcd_digits(data: bytes) -> str:
    out = []
    for b in data:
        for nib in (b & 0x0F, b >> 4):
            if nib == 0x0F:
                continue
            out.append("0123456789*#abc"[nib])
    return "".join(out)


def _digits_to_bcd(digits: str) -> bytes:
    table = {c: i for i, c in enumerate("0123456789*#abc")}
    if len(digits) % 2:
        digits += "F"
    out = bytearray()
    for i in range(0, len(digits), 2):
        lo, hi = digits[i], digits[i + 1]
        out.append(table[lo] | ((0x0F if hi == "F" else table[hi]) << 4))
    return bytes(out)


def _read_address(r: _Reader, what: str) -> tuple[str, int]:
    semi = r.byte(what + " length")
    toa = r.byte(what + " type")
    raw = r.take((semi + 1) // 2, what)
    if (toa & 0x70) == 0x50:  # alphanumeric: GSM-7 packed
        return gsm7.from_septets(gsm7.unpack(raw, semi * 4 // 7)), toa
    digits = _bcd_digits(raw)[:semi]
    return ("+" + digits if (toa & 0x70) == 0x10 else digits), toa


def _read_smsc(r: _Reader) -> str | None:
    n = r.byte("SMSC length")
    if n == 0:
        return None
    body = r.take(n, "SMSC")
    digits = _bcd_digits(body[1:])
    return "+" + digits if (body[0] & 0x70) == 0x10 else digits


def _encode_address(number: str) -> bytes:
    if number and not number.lstrip("+").isdigit():  # alphanumeric sender (simulator use)
        septets = gsm7.to_septets(number)
        return bytes([math.ceil(len(septets) * 7 / 4), 0xD0]) + gsm7.pack(septets)
    intl = number.startswith("+")
    digits = number.lstrip("+")
    return bytes([len(digits), 0x91 if intl else 0x81]) + _digits_to_bcd(digits)


def _encode_smsc(smsc: str | None) -> bytes:
    if not smsc:
        return b"\x00"
    addr = _encode_address(smsc)[1:]
    return bytes([len(addr)]) + addr


def _read_scts(r: _Reader, what: str) -> datetime:
    raw = r.take(7, what)
    v = [(b & 0x0F) * 10 + (b >> 4) for b in raw[:6]]
    tz = raw[6]
    quarters = (tz & 0x07) * 10 + (tz >> 4)
    offset = timedelta(minutes=15 * quarters) * (-1 if tz & 0x08 else 1)
    try:
        return datetime(2000 + v[0], v[1], v[2], v[3], v[4], v[5], tzinfo=timezone(offset))
    except ValueError as exc:
        raise PduError(f"bad {what} {raw.hex().upper()}: {exc}") from None


def encode_scts(ts: datetime) -> bytes:
    def swap(n: int) -> int:
        return (n % 10) << 4 | (n // 10)

    offset = ts.utcoffset() or timedelta(0)
    quarters = int(abs(offset.total_seconds()) // 900)
    tz = swap(quarters) | (0x08 if offset < timedelta(0) else 0)
    return bytes([swap(ts.year % 100), swap(ts.month), swap(ts.day), swap(ts.hour), swap(ts.minute), swap(ts.second), tz])


def sms_alphabet(dcs: int) -> str:
    """Alphabet from an SMS DCS by bit groups (TS 23.038 section 4), not by table lookup."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding (incl. automatic deletion group)
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group in (0xC, 0xD):
        return "gsm7"
    if group == 0xE:
        return "ucs2"
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"  # reserved groups: best effort


def _read_ud(r: _Reader, udhi: bool, dcs: int) -> UserData:
    udl = r.byte("UDL")
    enc = sms_alphabet(dcs)
    rest = r.data[r.pos :]
    nbytes = math.ceil(udl * 7 / 8) if enc == "gsm7" else udl
    if len(rest) < nbytes:
        raise PduError(f"user data truncated: UDL {udl} needs {nbytes} octets, have {len(rest)}")
    ud = r.take(nbytes, "user data")
    headers: list[tuple[int, bytes]] = []
    hlen = 0
    if udhi:
        if not ud:
            raise PduError("UDHI set but no user data header")
        hlen = ud[0] + 1
        if hlen > len(ud):
            raise PduError("user data header longer than the user data")
        i = 1
        while i + 1 < hlen:
            iei, ln = ud[i], ud[i + 1]
            headers.append((iei, bytes(ud[i + 2 : i + 2 + ln])))
            i += 2 + ln
    concat = _concat(headers)
    if enc == "gsm7":
        hsept = math.ceil(hlen * 8 / 7)
        fill = (hsept * 7 - hlen * 8)
        septets = gsm7.unpack(ud[hlen:], udl - hsept, fill)
        return UserData(enc, gsm7.from_septets(septets), bytes(septets), udl, concat, tuple(headers))
    body = bytes(ud[hlen:])
    text = body.decode("utf-16-be", errors="replace") if enc == "ucs2" else body.decode("latin-1")
    return UserData(enc, text, body, udl, concat, tuple(headers))


def _concat(headers: list[tuple[int, bytes]]) -> Concat | None:
    for iei, data in headers:
        if iei == 0x00 and len(data) == 3:
            return Concat(data[0], data[1], data[2], 0x00)
        if iei == 0x08 and len(data) == 4:
            return Concat(data[0] << 8 | data[1], data[2], data[3], 0x08)
    return None


# ---------------------------------------------------------------- decode -----
def decode(pdu_hex: str) -> Deliver | Submit | StatusReport:
    """Decode one PDU as the modem shows it (SMSC prefix first). Raises PduError."""
    try:
        data = bytes.fromhex(pdu_hex.strip())
    except ValueError:
        raise PduError("PDU is not hex") from None
    r = _Reader(data)
    smsc = _read_smsc(r)
    fo = r.byte("first octet")
    mti = fo & 0x03
    if mti == 0x00:
        sender, toa = _read_address(r, "originator")
        pid, dcs = r.byte("PID"), r.byte("DCS")
        ts = _read_scts(r, "SCTS")
        return Deliver(smsc, sender, toa, pid, dcs, ts, _read_ud(r, bool(fo & 0x40), dcs), not fo & 0x04)
    if mti == 0x01:
        mr = r.byte("MR")
        dest, toa = _read_address(r, "destination")
        pid, dcs = r.byte("PID"), r.byte("DCS")
        vpf = (fo >> 3) & 0x03
        r.take({0: 0, 2: 1}.get(vpf, 7), "validity period")
        return Submit(smsc, mr, dest, toa, pid, dcs, bool(fo & 0x20), _read_ud(r, bool(fo & 0x40), dcs))
    if mti == 0x02:
        mr = r.byte("MR")
        recipient, _ = _read_address(r, "recipient")
        scts = _read_scts(r, "SCTS")
        dt = _read_scts(r, "discharge time")
        return StatusReport(smsc, mr, recipient, scts, dt, r.byte("status"))
    raise PduError(f"unsupported message type (first octet {fo:#04x})")


# ---------------------------------------------------------------- encode -----
def _split(text: str) -> tuple[str, list[bytes]]:
    """Choose the alphabet and split into per-part payloads (septets or UTF-16 octets)."""
    if gsm7.can_encode(text):
        septets = gsm7.to_septets(text)
        if len(septets) <= 160:
            return "gsm7", [bytes(septets)]
        parts, cur = [], []
        for ch in text:
            s = gsm7.to_septets(ch)
            if len(cur) + len(s) > 153:  # never split an escape pair
                parts.append(bytes(cur))
                cur = []
            cur += s
        return "gsm7", parts + [bytes(cur)]
    raw = text.encode("utf-16-be")
    if len(raw) <= 140:
        return "ucs2", [raw]
    parts, i = [], 0
    while i < len(raw):
        end = min(i + 134, len(raw))
        if end < len(raw) and 0xD8 <= raw[end - 2] <= 0xDB:  # keep surrogate pairs together
            end -= 2
        parts.append(raw[i:end])
        i = end
    return "ucs2", parts


def _ud_bytes(enc: str, payload: bytes, concat: Concat | None) -> tuple[int, bytes]:
    """(UDL, UD octets) for one part; GSM-7 text starts on a septet boundary after the UDH."""
    header = b""
    if concat is not None:
        header = bytes([0x05, 0x00, 0x03, concat.ref & 0xFF, concat.total, concat.seq])
    if enc == "gsm7":
        hsept = math.ceil(len(header) * 8 / 7)
        return hsept + len(payload), header + gsm7.pack(list(payload), hsept * 7 - len(header) * 8)
    return len(header) + len(payload), header + payload


def encode_submit(destination: str, text: str, *, smsc: str | None = None, ref: int = 0,
                  status_report: bool = True, validity: int = 0xAA) -> list[OutgoingPdu]:
    """SMS-SUBMIT PDU(s) for ``text``; several parts (8-bit reference ``ref``) when too long."""
    enc, payloads = _split(text)
    total = len(payloads)
    out = []
    for seq, payload in enumerate(payloads, 1):
        concat = Concat(ref & 0xFF, total, seq, 0x00) if total > 1 else None
        fo = 0x01 | 0x10 | (0x20 if status_report else 0) | (0x40 if concat else 0)
        udl, ud = _ud_bytes(enc, payload, concat)
        tpdu = (bytes([fo, 0x00]) + _encode_address(destination)
                + bytes([0x00, 0x08 if enc == "ucs2" else 0x00, validity, udl]) + ud)
        out.append(OutgoingPdu((_encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu)))
    return out


def encode_deliver(sender: str, text: str, timestamp: datetime, *, smsc: str | None = "+447785016005",
                   concat: Concat | None = None, ucs2: bool | None = None) -> OutgoingPdu:
    """One SMS-DELIVER (simulator use). ``text`` must fit one part."""
    use_ucs2 = ucs2 if ucs2 is not None else not gsm7.can_encode(text)
    enc = "ucs2" if use_ucs2 else "gsm7"
    payload = text.encode("utf-16-be") if use_ucs2 else bytes(gsm7.to_septets(text))
    udl, ud = _ud_bytes(enc, payload, concat)
    fo = 0x04 | (0x40 if concat else 0)
    tpdu = (bytes([fo]) + _encode_address(sender) + bytes([0x00, 0x08 if use_ucs2 else 0x00])
            + encode_scts(timestamp) + bytes([udl]) + ud)
    return OutgoingPdu((_encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))


def encode_status_report(mr: int, recipient: str, scts: datetime, discharge: datetime, status: int,
                         *, smsc: str | None = "+447785016005") -> OutgoingPdu:
    tpdu = (bytes([0x06, mr & 0xFF]) + _encode_address(recipient) + encode_scts(scts)
            + encode_scts(discharge) + bytes([status]))
    return OutgoingPdu((_encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))
