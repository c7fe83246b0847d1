"""Caller ID from voice modems: formatted tag lines and raw SDMF/MDMF hex. Pure code.

Formatted (``AT+VCID=1`` / ``AT#CID=1``): ``DATE = 0314``, ``TIME = 1205``,
``NMBR = 5035551234``, ``NAME = SMITH JOHN`` -- with spaces round ``=`` (Rockwell,
Conexant) or without (USR 5637). ``P`` means withheld, ``O`` unavailable (out of area).
Every field but the number is optional (UK BT sends only NMBR).

Raw (``AT+VCID=2``): the whole Bellcore GR-30 message as hex on one line, **not**
checked by the modem. MDMF ``80 <len> {<type> <len> <value>}* <cksum>``, SDMF
``04 <len> MMDDhhmm<number|O|P> <cksum>``; the byte sum of the whole message is 0 mod
256. A message whose checksum or lengths do not verify is reported with
``trusted=False`` and never presented as the caller's number.
"""
from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from appliance.lines import CallerId

MDMF = 0x80
SDMF = 0x04
_MDMF_DATETIME = 0x01
_MDMF_NUMBER = 0x02
_MDMF_DIALABLE = 0x03
_MDMF_NUMBER_ABSENT = 0x04
_MDMF_NAME = 0x07
_MDMF_NAME_ABSENT = 0x08

# Tags modems print in formatted mode (Telenetics adds the last three).
_TAGS = frozenset({"DATE", "TIME", "NMBR", "NAME", "MESG", "DDN_NMBR", "REASON NO NAME", "QUAL", "REDIRECT"})
_TAG_RE = re.compile(r"^\s*([A-Z][A-Z_ ]*?)\s*=\s*(.*?)\s*$")
_HEX_RE = re.compile(r"^(?:[0-9A-Fa-f]{2}){4,}$")


class Presentation(StrEnum):
    AVAILABLE = "available"
    WITHHELD = "withheld"  # "P": private, the caller withheld it
    UNAVAILABLE = "unavailable"  # "O": out of area / not sent by the network


_MARKERS = {"P": Presentation.WITHHELD, "O": Presentation.UNAVAILABLE}


@dataclass(frozen=True, slots=True)
class CallerIdReport:
    number: str | None = None
    name: str | None = None
    number_presentation: Presentation = Presentation.UNAVAILABLE
    name_presentation: Presentation = Presentation.UNAVAILABLE
    date: str | None = None  # "MMDD" as the exchange sent it
    time: str | None = None  # "HHMM", 24 h
    trusted: bool = True  # False: raw message failed its checksum/length checks
    problem: str | None = None  # why it is not trusted
    extra: tuple[tuple[str, str], ...] = ()  # unknown tags / MDMF parameters (type, hex or text)
    source: str = "formatted"  # "formatted" | "mdmf" | "sdmf"

    def to_caller_id(self) -> CallerId:
        """What the appliance shows. An untrusted message gives no number at all."""
        if not self.trusted:
            return CallerId(number=None, name=None, presentation=Presentation.UNAVAILABLE.value)
        return CallerId(number=self.number, name=self.name, presentation=self.number_presentation.value)


class CallerIdError(ValueError):
    """A line is not a caller-ID message at all."""


def parse_tag_line(text: str) -> tuple[str, str] | None:
    """``"NMBR = 5035551234"`` -> ``("NMBR", "5035551234")``; None for any other line."""
    m = _TAG_RE.match(text)
    if m is None:
        return None
    tag = " ".join(m.group(1).split())
    if tag not in _TAGS:
        return None
    return tag, m.group(2)


def is_raw_message(text: str) -> bool:
    """True for a line that looks like raw SDMF/MDMF hex (``+VCID=2``)."""
    t = text.strip()
    return bool(_HEX_RE.match(t)) and t[:2] in ("80", "04")


@dataclass(slots=True)
class FormattedCallerId:
    """Collects the tag lines of one formatted caller-ID block."""

    fields: dict[str, str] = field(default_factory=dict)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def add(self, tag: str, value: str) -> None:
        if tag in ("DATE", "TIME", "NMBR", "NAME"):
            self.fields[tag] = value
        elif tag == "DDN_NMBR":
            self.fields.setdefault("NMBR", value)
        else:
            self.extra.append((tag, value))

    @property
    def empty(self) -> bool:
        return not self.fields and not self.extra

    def report(self) -> CallerIdReport:
        number, number_p = _value(self.fields.get("NMBR"))
        name, name_p = _value(self.fields.get("NAME"))
        return CallerIdReport(
            number=number,
            name=name,
            number_presentation=number_p,
            name_presentation=name_p,
            date=self.fields.get("DATE"),
            time=self.fields.get("TIME"),
            extra=tuple(self.extra),
        )


def _value(raw: str | None) -> tuple[str | None, Presentation]:
    if raw is None or raw == "":
        return None, Presentation.UNAVAILABLE
    marker = _MARKERS.get(raw.upper())
    if marker is not None:
        return None, marker
    return raw, Presentation.AVAILABLE


def decode_raw(text: str) -> CallerIdReport:
    """Decode one raw SDMF/MDMF hex line; raises ``CallerIdError`` if it is not one."""
    if not is_raw_message(text):
        raise CallerIdError(f"not a raw caller-ID message: {text[:40]!r}")
    msg = binascii.unhexlify(text.strip())
    problems = []
    if sum(msg) % 256 != 0:
        problems.append("checksum does not verify")
    declared = msg[1]
    body = msg[2:-1]
    if declared != len(body):
        problems.append(f"length byte {declared} but {len(body)} payload bytes")
        body = body[:declared]
    if msg[0] == SDMF:
        report = _decode_sdmf(body)
    else:
        report = _decode_mdmf(body, problems)
    if problems:
        return replace(report, trusted=False, problem="; ".join(problems))
    return report


def _ascii(data: bytes) -> str:
    return data.decode("ascii", errors="replace").strip()


def _split_datetime(value: str) -> tuple[str | None, str | None]:
    if len(value) >= 8 and value[:8].isdigit():
        return value[:4], value[4:8]
    return None, None


def _decode_sdmf(body: bytes) -> CallerIdReport:
    date, time = _split_datetime(_ascii(body[:8]))
    number, presentation = _value(_ascii(body[8:]))
    return CallerIdReport(number=number, number_presentation=presentation, date=date, time=time, source="sdmf")


def _decode_mdmf(body: bytes, problems: list[str]) -> CallerIdReport:
    fields: dict[int, bytes] = {}
    extra: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            problems.append(f"parameter at offset {pos} runs past the end")
            break
        ptype, plen = body[pos], body[pos + 1]
        value = body[pos + 2 : pos + 2 + plen]
        pos += 2 + plen
        if ptype in (_MDMF_DATETIME, _MDMF_NUMBER, _MDMF_DIALABLE, _MDMF_NUMBER_ABSENT, _MDMF_NAME, _MDMF_NAME_ABSENT):
            fields[ptype] = value
        else:
            extra.append((f"0x{ptype:02X}", value.hex().upper()))
    date, time = _split_datetime(_ascii(fields.get(_MDMF_DATETIME, b"")))
    raw_number = fields.get(_MDMF_NUMBER, fields.get(_MDMF_DIALABLE))
    if raw_number is not None:
        number, number_p = _value(_ascii(raw_number))
    else:
        number, number_p = _value(_ascii(fields.get(_MDMF_NUMBER_ABSENT, b"O")) or "O")
    if _MDMF_NAME in fields:
        name, name_p = _value(_ascii(fields[_MDMF_NAME]))
    else:
        name, name_p = _value(_ascii(fields.get(_MDMF_NAME_ABSENT, b"O")) or "O")
    return CallerIdReport(
        number=number,
        name=name,
        number_presentation=number_p,
        name_presentation=name_p,
        date=date,
        time=time,
        extra=tuple(extra),
        source="mdmf",
    )


def encode_mdmf(*, datetime: str, number: str | None = None, name: str | None = None,
                number_absent: str | None = None, name_absent: str | None = None) -> str:
    """Build a raw MDMF hex line (simulator and tests). ``datetime`` is ``MMDDhhmm``."""
    params = bytearray()
    for ptype, value in (
        (_MDMF_DATETIME, datetime),
        (_MDMF_NUMBER, number),
        (_MDMF_NUMBER_ABSENT, number_absent),
        (_MDMF_NAME, name),
        (_MDMF_NAME_ABSENT, name_absent),
    ):
        if value is not None:
            raw = value.encode("ascii")
            params += bytes((ptype, len(raw))) + raw
    msg = bytes((MDMF, len(params))) + params
    return (msg + bytes(((-sum(msg)) % 256,))).hex().upper()
