"""SIP URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1). Pure functions.

The identity of a From/To header is always the URI inside ``<...>``, never text
found in the display name: ``"Bob <sip:evil@x>" <sip:bob@host>`` is ``sip:bob@host``.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from drivers.sip.errors import SipSyntaxError

SIP_SCHEMES = frozenset({"sip", "sips"})
# Schemes we accept inside From/To/Contact (tel: caller IDs are common from gateways).
KNOWN_SCHEMES = frozenset({"sip", "sips", "tel"})

Params = tuple[tuple[str, str | None], ...]


def is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' and other Unicode digits int() refuses."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, slots=True)
class Uri:
    scheme: str  # lower case
    user: str | None  # for tel: the number
    host: str  # lower case; "" for tel:
    port: int | None = None
    params: Params = ()
    headers: str = ""  # the raw "?a=b" part without "?"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = f"tel:{self.user}"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            out = f"{self.scheme}:{self.user + '@' if self.user else ''}{host}"
            if self.port is not None:
                out += f":{self.port}"
        for key, value in self.params:
            out += f";{key}" if value is None else f";{key}={value}"
        if self.headers:
            out += "?" + self.headers
        return out


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact value: optional display name, the URI, header parameters."""

    display_name: str | None
    uri: Uri
    params: Params = ()

    @property
    def tag(self) -> str | None:
        for key, value in self.params:
            if key == "tag":
                return value
        return None

    def with_tag(self, tag: str) -> "NameAddr":
        kept = tuple(p for p in self.params if p[0] != "tag")
        return NameAddr(self.display_name, self.uri, kept + (("tag", tag),))

    def __str__(self) -> str:
        out = ""
        if self.display_name:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            out = f'"{escaped}" '
        out += f"<{self.uri}>"
        for key, value in self.params:
            out += f";{key}" if value is None else f";{key}={value}"
        return out


def parse_params(text: str) -> Params:
    """``;a=b;c`` (leading ';' optional) -> (("a", "b"), ("c", None)); names lower-cased."""
    out: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not key:
            raise SipSyntaxError(f"empty parameter name in {text!r}")
        out.append((key, value.strip() if sep else None))
    return tuple(out)


def parse_uri(text: str) -> Uri:
    """Parse a URI. Non-sip schemes other than tel: come back with only scheme and raw rest."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme or not scheme.isascii() or not scheme[0].isalpha() or not rest:
        raise SipSyntaxError(f"malformed URI {text!r}")
    if any(c.isspace() for c in rest):
        raise SipSyntaxError(f"whitespace inside URI {text!r}")
    if scheme == "tel":
        number, _, ptext = rest.partition(";")
        return Uri("tel", unquote(number), "", None, parse_params(ptext))
    if scheme not in SIP_SCHEMES:
        return Uri(scheme, None, rest)
    rest, _, headers = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hostport, _, ptext = hostpart.partition(";")
    user = unquote(userinfo.partition(":")[0]) if userinfo else None
    if hostport.startswith("["):
        host, bracket, portpart = hostport[1:].partition("]")
        if not bracket:
            raise SipSyntaxError(f"unterminated IPv6 host in {text!r}")
        portpart = portpart[1:] if portpart.startswith(":") else portpart
    else:
        host, _, portpart = hostport.partition(":")
    if not host:
        raise SipSyntaxError(f"URI without host {text!r}")
    port: int | None = None
    if portpart:
        if not is_digits(portpart) or not 0 < int(portpart) < 65536:
            raise SipSyntaxError(f"bad port in URI {text!r}")
        port = int(portpart)
    return Uri(scheme, user, host.lower(), port, parse_params(ptext), headers)


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at text[start] == '"'; return (value, index after it)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipSyntaxError("unterminated quoted display name")


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``[display] <uri>;params`` or ``addr-spec;params`` (RFC 3261 §20.10)."""
    text = text.strip()
    display: str | None = None
    i = 0
    if text.startswith('"'):
        display, i = _quoted(text, 0)
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text) or text[i] != "<":
            raise SipSyntaxError("quoted display name not followed by <URI>")
    else:
        lt = text.find("<")
        if lt >= 0:
            display = text[:lt].strip() or None
            i = lt
    if i < len(text) and text[i] == "<":
        gt = text.find(">", i)
        if gt < 0:
            raise SipSyntaxError("unterminated <URI>")
        uri = parse_uri(text[i + 1 : gt])
        params = parse_params(text[gt + 1 :].lstrip().removeprefix(";")) if text[gt + 1 :].strip() else ()
        if text[gt + 1 :].strip() and not text[gt + 1 :].lstrip().startswith(";"):
            raise SipSyntaxError("garbage after <URI>")
    else:
        # addr-spec form: parameters after the URI belong to the header (§20.10)
        addr, _, ptext = text.partition(";")
        uri = parse_uri(addr)
        params = parse_params(ptext)
    if uri.scheme not in KNOWN_SCHEMES:
        raise SipSyntaxError(f"unsupported URI scheme {uri.scheme!r} in name-addr")
    return NameAddr(display or None, uri, params)
