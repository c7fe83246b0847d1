"""The SDP in a SIP message body. Pure code.

Most peers send ``application/sdp``. SIP-I/SIP-T carrier trunks (RFC 3204, ITU-T Q.1912.5)
send ``multipart/mixed``: the SDP part and an ISUP part, which we may ignore when it is
marked ``handling=optional`` (a part without that is required, RFC 5621 §3.2, and refused). A compressed body (``Content-Encoding`` other than identity) is
refused with 415 and ``Accept-Encoding: identity`` (RFC 3261 §8.2.3).
"""
from __future__ import annotations

from drivers.sip.errors import SdpError
from drivers.sip.message import SipRequest, SipResponse
from drivers.sip.sdp import Negotiated, SessionDescription, parse_answer
from drivers.sip.uri import parse_params

SDP = "application/sdp"


class UnsupportedBody(Exception):
    """A body we cannot read: answer 415 with these headers."""

    def __init__(self, detail: str, headers: tuple[tuple[str, str], ...]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


def _type_and_params(value: str | None) -> tuple[str, dict[str, str]]:
    kind, _, rest = (value or "").partition(";")
    return kind.strip().lower(), {k.lower(): (v or "").strip('"') for k, v in parse_params(rest)}


def _parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body (RFC 2046 §5.1): their headers (lower-case names) and content."""
    delimiter = b"--" + boundary.encode("utf-8", errors="replace")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        head, _, content = chunk.removeprefix(b"\r\n").removeprefix(b"\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, content.removesuffix(b"\r\n")))
    return parts


def _refuse(detail: str) -> UnsupportedBody:
    return UnsupportedBody(detail, (("Accept", f"{SDP}, multipart/mixed"),))


def sdp_of_request(request: SipRequest) -> bytes:
    """The SDP a request carries (b"": none). ``UnsupportedBody`` for what we cannot read."""
    if not request.body:
        return b""
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedBody(f"Content-Encoding {encoding[:20]!r}", (("Accept-Encoding", "identity"),))
    kind, params = _type_and_params(request.headers.get("Content-Type"))
    if kind == SDP:
        return request.body
    if not kind.startswith("multipart/") or not params.get("boundary"):
        raise _refuse(f"a {kind or 'untyped'} body")
    sdp = b""
    for headers, content in _parts(request.body, params["boundary"]):
        part_kind, _ = _type_and_params(headers.get("content-type", "text/plain"))
        if part_kind == SDP and not sdp:
            sdp = content
        elif "handling=optional" not in headers.get("content-disposition", "").replace(" ", "").lower():
            raise _refuse(f"a required {part_kind} part")
    return sdp


def sdp_in(message: SipRequest | SipResponse) -> bytes:
    """The SDP an answer carries (a response, an ACK); b"" when none or unreadable, which the
    caller treats as no answer."""
    try:
        return sdp_of_request(message)  # type: ignore[arg-type]  (only headers and body are read)
    except UnsupportedBody:
        return b""


def answer_in(message: SipRequest | SipResponse) -> tuple[SessionDescription, Negotiated]:
    """The SDP answer a response or an ACK carries; ``SdpError`` when it has none or it is unusable."""
    sdp = sdp_in(message)
    if not sdp:
        raise SdpError(400, f"the {getattr(message, 'method', 'response')} carries no SDP answer")
    return parse_answer(sdp)
