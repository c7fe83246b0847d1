"""Typed errors of the SIP core. Each parse error carries the status code to answer."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.sip.headers import Headers


class SipError(Exception):
    """Base of every error raised by drivers.sip."""


class SipSyntaxError(SipError, ValueError):
    """A header value or URI could not be parsed (becomes a 400 once the header is known)."""


class SipParseError(SipError):
    """A message could not be accepted. ``status``/``reason`` is the response to send.

    ``headers`` holds whatever header lines were readable, so the answer can copy
    Via, From, To, Call-ID and CSeq; ``is_request`` is False for unparseable
    responses (which are dropped, never answered).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        *,
        headers: "Headers | None" = None,
        is_request: bool = True,
        method: str | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers
        self.is_request = is_request
        self.method = method


class FramingError(SipError):
    """A stream (TCP) can no longer be framed; the connection must be closed."""


class SdpError(SipError):
    """An SDP offer we cannot accept: 400 when malformed, 488 when nothing in common."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class TransactionError(SipError):
    """A transaction was driven in a way its state machine does not allow."""
