"""SIP header fields: canonical names, compact forms, list splitting, Via and CSeq values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from drivers.sip.errors import SipSyntaxError
from drivers.sip.uri import Params, is_digits, parse_params

# RFC 3261 §7.3.3 and later RFCs (3265, 3515, 3892, 3841, 4028, 4474)
COMPACT_FORMS = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "y": "Identity", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition",
}
_SPECIAL_CASE = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "min-se": "Min-SE",
}
# Headers whose value is a comma-separated list (§7.3.1). Others (Date, auth headers) are not split.
LIST_HEADERS = frozenset({
    "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
    "Content-Encoding", "Allow-Events", "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info",
})
_cache: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """'v' -> 'Via', 'call-id' -> 'Call-ID', 'content-length' -> 'Content-Length'."""
    found = _cache.get(name)
    if found is not None:
        return found
    low = name.lower()
    result = COMPACT_FORMS.get(low) or _SPECIAL_CASE.get(low) or "-".join(
        p[:1].upper() + p[1:] for p in low.split("-")
    )
    if len(_cache) < 512:  # bounded: peers can invent header names
        _cache[name] = result
    return result


def split_list(value: str) -> list[str]:
    """Split on commas that are outside quotes and <...>."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == "," and depth == 0:
            item = value[start:i].strip()
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip()
    if item:
        out.append(item)
    return out


class Headers:
    """An ordered, case-insensitive multi-map of header fields (names canonical).

    Immutable after construction; build new ones with ``with_added`` / ``without``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple((canonical_name(k), v) for k, v in items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        key = canonical_name(str(name))
        return any(k == key for k, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._items == self._items

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def get(self, name: str) -> str | None:
        """The first value (first list element for list headers), or None."""
        key = canonical_name(name)
        for k, v in self._items:
            if k == key:
                if key in LIST_HEADERS:
                    parts = split_list(v)
                    return parts[0] if parts else v
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value, list headers split on commas across all their header lines."""
        key = canonical_name(name)
        raw = [v for k, v in self._items if k == key]
        if key in LIST_HEADERS:
            return [item for v in raw for item in split_list(v)]
        return raw

    def with_added(self, *items: tuple[str, str]) -> "Headers":
        out = Headers()
        out._items = self._items + tuple((canonical_name(k), v) for k, v in items)
        return out

    def without(self, *names: str) -> "Headers":
        drop = {canonical_name(n) for n in names}
        out = Headers()
        out._items = tuple(item for item in self._items if item[0] not in drop)
        return out


@dataclass(frozen=True, slots=True)
class Via:
    transport: str  # upper case: UDP, TCP, TLS, WS
    host: str
    port: int | None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port or 5060}"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def parse_via(value: str) -> Via:
    proto, _, rest = value.strip().partition(" ")
    parts = [p.strip() for p in proto.split("/")]
    if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
        raise SipSyntaxError(f"bad Via protocol {value!r}")
    hostport, _, ptext = rest.strip().partition(";")
    hostport = hostport.strip()
    if hostport.startswith("["):
        host, _, portpart = hostport[1:].partition("]")
        portpart = portpart.removeprefix(":")
    else:
        host, _, portpart = hostport.partition(":")
    host = host.strip()
    portpart = portpart.strip()
    if not host or " " in host:
        raise SipSyntaxError(f"bad Via sent-by {value!r}")
    if portpart and (not is_digits(portpart) or not 0 < int(portpart) < 65536):
        raise SipSyntaxError(f"bad Via port {value!r}")
    return Via(parts[2].upper(), host.lower(), int(portpart) if portpart else None, parse_params(ptext))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not is_digits(parts[0]) or int(parts[0]) > MAX_CSEQ:
        raise SipSyntaxError(f"bad CSeq {value!r}")
    if not parts[1].isalpha() or not parts[1].isascii():
        raise SipSyntaxError(f"bad CSeq method {value!r}")
    return CSeq(int(parts[0]), parts[1])
