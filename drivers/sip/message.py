"""SIP messages: parse (datagram or stream-framed bytes) and serialize. Pure code, no I/O.

``parse_message`` either returns a fully validated ``SipRequest``/``SipResponse`` or
raises ``SipParseError`` carrying the status to answer (400, 416, 505) and the
readable headers, from which ``error_response`` builds the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.sip.errors import FramingError, SipParseError, SipSyntaxError
from drivers.sip.headers import CSeq, Headers, Via, parse_cseq, parse_via
from drivers.sip.uri import SIP_SCHEMES, NameAddr, Uri, is_digits, parse_name_addr, parse_uri

SIP_VERSION = "SIP/2.0"
MAX_MESSAGE_BYTES = 65535  # largest UDP payload; a TCP message bigger than this is refused
MAX_HEADER_LINE = 8192  # one (unfolded) header field; real ones (Identity, long Route sets) are < 4 KB
MAX_HEADER_FIELDS = 256  # header fields in one message; a phone sends about 15
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # CTLs other than HT, CR, LF
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    600: "Busy Everywhere", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    603: "Decline",
}


@dataclass(frozen=True, slots=True)
class SipRequest:
    method: str
    uri: Uri
    headers: Headers
    body: bytes
    vias: tuple[Via, ...]
    from_addr: NameAddr
    to_addr: NameAddr
    call_id: str
    cseq: CSeq

    @property
    def via(self) -> Via:
        return self.vias[0]

    @property
    def branch(self) -> str | None:
        return self.vias[0].branch


@dataclass(frozen=True, slots=True)
class SipResponse:
    status: int
    reason: str
    headers: Headers
    body: bytes
    vias: tuple[Via, ...]
    from_addr: NameAddr
    to_addr: NameAddr
    call_id: str
    cseq: CSeq

    @property
    def via(self) -> Via:
        return self.vias[0]

    @property
    def branch(self) -> str | None:
        return self.vias[0].branch


SipMessage = SipRequest | SipResponse


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data, b""


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]]]:
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0]
    fields: list[tuple[str, str]] = []
    if len(lines) > MAX_HEADER_FIELDS + 1:
        raise SipSyntaxError(f"more than {MAX_HEADER_FIELDS} header lines")
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise SipSyntaxError(f"header line longer than {MAX_HEADER_LINE} bytes")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipSyntaxError("continuation line before any header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")  # folding: LWS becomes one SP
            if len(fields[-1][1]) > MAX_HEADER_LINE:
                raise SipSyntaxError(f"folded header longer than {MAX_HEADER_LINE} bytes")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SipSyntaxError(f"malformed header line {line[:60]!r}")
        fields.append((name, value.strip()))
    return start, fields


def _bad(detail: str, headers: Headers | None, is_request: bool, method: str | None,
         status: int = 400, reason: str = "Bad Request") -> SipParseError:
    return SipParseError(status, reason, detail, headers=headers, is_request=is_request, method=method)


def parse_message(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one whole message (a UDP datagram, or bytes framed by ``StreamFramer``)."""
    data = data.lstrip(b"\r\n")
    head_b, body = _split_head(data)
    try:
        head = head_b.decode("utf-8")
    except UnicodeDecodeError:
        head = head_b.decode("latin-1")
    first = head.split("\n", 1)[0].strip()
    is_request = not first.startswith("SIP/")
    parts = first.split(" ", 2)
    method = parts[0] if is_request and _TOKEN.match(parts[0] or "-") else None
    try:
        start, fields = _header_lines(head)
    except SipSyntaxError as exc:
        raise _bad(str(exc), None, is_request, method) from None
    headers = Headers(fields)
    control = _CONTROL.search(head)
    if control is not None:
        raise _bad(f"control character {control.group()!r} in the header section", headers, is_request, method)

    if is_request:
        if len(parts) != 3 or method is None:
            raise _bad(f"malformed request line {first[:80]!r}", headers, True, method)
        if parts[2].strip().upper() != SIP_VERSION:  # §7.1: the version string is case-insensitive
            if parts[2].strip().upper().startswith("SIP/"):
                raise _bad(f"unsupported version {parts[2]!r}", headers, True, method,
                           505, REASONS[505])
            raise _bad(f"malformed request line {first[:80]!r}", headers, True, method)
    else:
        if len(parts) < 2 or parts[0] != SIP_VERSION or not is_digits(parts[1]) or len(parts[1]) != 3:
            raise _bad(f"malformed status line {first[:80]!r}", headers, False, None)

    # Content-Length (§18.3, §20.14)
    cl_values = {v.strip() for v in headers.get_all("Content-Length")}
    if len(cl_values) > 1:  # request smuggling: which length would a proxy believe?
        raise _bad(f"conflicting Content-Length values {sorted(cl_values)[:3]}", headers, is_request, method)
    cl_text = headers.get("Content-Length")
    if cl_text is not None:
        cl_text = cl_text.strip()
        if not is_digits(cl_text):
            raise _bad(f"bad Content-Length {cl_text!r}", headers, is_request, method)
        length = int(cl_text)
        if length > len(body):
            raise _bad(f"body shorter than Content-Length ({len(body)} < {length})",
                       headers, is_request, method)
        body = body[:length]
    elif stream:
        body = b""

    try:
        vias = tuple(parse_via(v) for v in headers.get_all("Via"))
        if not vias:
            raise SipSyntaxError("missing Via")
        from_text = headers.get("From")
        to_text = headers.get("To")
        call_id = headers.get("Call-ID")
        cseq_text = headers.get("CSeq")
        if from_text is None or to_text is None or not call_id or cseq_text is None:
            raise SipSyntaxError("missing From, To, Call-ID or CSeq")
        from_addr = parse_name_addr(from_text)
        to_addr = parse_name_addr(to_text)
        cseq = parse_cseq(cseq_text)
        if " " in call_id:
            raise SipSyntaxError(f"bad Call-ID {call_id!r}")
        mf = headers.get("Max-Forwards")
        if mf is not None and (not is_digits(mf) or int(mf) > 255):
            raise SipSyntaxError(f"bad Max-Forwards {mf!r}")
    except SipSyntaxError as exc:
        raise _bad(str(exc), headers, is_request, method) from None

    if not is_request:
        return SipResponse(int(parts[1]), parts[2].strip() if len(parts) > 2 else "", headers,
                           body, vias, from_addr, to_addr, call_id, cseq)

    assert method is not None
    if cseq.method != method:
        raise _bad(f"CSeq method {cseq.method} does not match {method}", headers, True, method)
    try:
        uri = parse_uri(parts[1])
    except SipSyntaxError as exc:
        raise _bad(str(exc), headers, True, method) from None
    if uri.scheme not in SIP_SCHEMES:
        raise _bad(f"Request-URI scheme {uri.scheme!r}", headers, True, method, 416, REASONS[416])
    return SipRequest(method, uri, headers, body, vias, from_addr, to_addr, call_id, cseq)


def serialize_request(method: str, uri: str, headers: Headers, body: bytes = b"") -> bytes:
    return _serialize(f"{method} {uri} {SIP_VERSION}", headers, body)


def serialize_response(status: int, reason: str, headers: Headers, body: bytes = b"") -> bytes:
    return _serialize(f"{SIP_VERSION} {status} {reason}", headers, body)


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines.extend(f"{k}: {v}" for k, v in headers if k != "Content-Length")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def stamp_via(value: str, source: tuple[str, int]) -> str:
    """The request's top Via as our responses carry it: ``received`` when it came from another
    address than its sent-by (§18.2.1) or asked for ``rport``, and ``rport`` filled in with the
    source port (RFC 3581), so a phone behind NAT learns the address we see."""
    head, *params = [p.strip() for p in value.split(";")]
    host = parse_via(value).host.strip("[]")
    wants_rport = any(p.split("=")[0].strip().lower() == "rport" for p in params)
    kept = [p for p in params if p.split("=")[0].strip().lower() not in ("rport", "received")]
    if wants_rport:
        kept.append(f"rport={source[1]}")
    if wants_rport or host != source[0]:
        kept.append(f"received={source[0]}")
    return ";".join([head, *kept])


def response_bytes(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    source: tuple[str, int] | None = None,
) -> bytes:
    """A response to ``request`` (§8.2.6.2): copies Via/From/Call-ID/CSeq, To with our tag.
    ``source``: where the request came from, stamped into the top Via (``stamp_via``)."""
    items: list[tuple[str, str]] = [("Via", v) for v in request.headers.get_all("Via")]
    if source is not None and items:
        items[0] = ("Via", stamp_via(items[0][1], source))
    items.append(("From", request.headers.get("From") or ""))
    to_value = request.headers.get("To") or ""
    if to_tag and request.to_addr.tag is None and status != 100:
        to_value = f"{to_value};tag={to_tag}"
    items += [("To", to_value), ("Call-ID", request.call_id), ("CSeq", str(request.cseq))]
    items.extend(extra)
    return serialize_response(status, reason or REASONS.get(status, "Unknown"), Headers(items), body)


def error_response(err: SipParseError, to_tag: str, server: str) -> bytes | None:
    """The answer to an unparseable request, built from whatever headers were readable."""
    if not err.is_request:
        return None
    h = err.headers or Headers()
    items: list[tuple[str, str]] = [("Via", v) for v in h.get_all("Via")]
    for name in ("From", "To", "Call-ID"):
        value = h.get(name)
        if value is not None:
            if name == "To" and ";tag=" not in value.replace(" ", ""):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
    cseq = h.get("CSeq")
    if cseq is not None:
        try:
            items.append(("CSeq", str(parse_cseq(cseq))))
        except SipSyntaxError:
            pass
    items.append(("Server", server))
    if err.status == 505:
        items.append(("Warning", f'399 {server.split("/")[0]} "Only SIP/2.0 is supported"'))
    if err.status == 416:
        items.append(("Warning", f'399 {server.split("/")[0]} "Only sip: and sips: are supported"'))
    reason = err.reason if err.status != 400 else f"Bad Request ({err.detail[:60]})".replace("\r", " ").replace("\n", " ")
    return serialize_response(err.status, reason, Headers(items))


_CL_LINE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class StreamFramer:
    """Cuts a byte stream (TCP) into messages by Content-Length (§18.3).

    Leading CRLFs (keep-alives) are skipped; LF-only line ends are tolerated. A
    message without Content-Length has an empty body. ``FramingError`` means the
    stream cannot be resynchronised and the connection must be closed.
    """

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_bytes
        self.pings = 0  # RFC 5626 §4.4.1 CRLFCRLF keep-alive pings seen; the shell answers each with CRLF

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:1] in (b"\r", b"\n"):
                if self._buf[:4] == b"\r\n\r\n":
                    self.pings += 1
                    del self._buf[:4]
                    continue
                if self._buf in (b"\r", b"\r\n", b"\r\n\r"):
                    return out  # maybe the start of a ping: wait for the rest
                del self._buf[:1]
            if not self._buf:
                return out
            head_end, sep = self._find_head_end()
            if head_end < 0:
                if len(self._buf) > self._max:
                    raise FramingError(f"no end of headers within {self._max} bytes")
                return out
            head = bytes(self._buf[:head_end])
            match = _CL_LINE.search(head)
            length = 0
            if match:
                if not match.group(1).isdigit():
                    raise FramingError(f"unusable Content-Length {match.group(1)!r} on a stream")
                length = int(match.group(1))
            total = head_end + sep + length
            if total > self._max:
                raise FramingError(f"message of {total} bytes exceeds {self._max}")
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]

    def _find_head_end(self) -> tuple[int, int]:
        crlf = self._buf.find(b"\r\n\r\n")
        lf = self._buf.find(b"\n\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            return crlf, 4
        return (lf, 2) if lf >= 0 else (-1, 0)
