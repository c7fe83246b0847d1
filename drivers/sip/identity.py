"""What an INVITE says about who is calling and what it takes over. Pure code.

The caller ID comes from the From URI (never from display-name text, so it cannot be
spoofed by a name like ``"Bob <sip:evil@x>"``), withheld when the URI or ``Privacy`` says
so. A ``Replaces`` header (RFC 3891) names the dialog an attended transfer takes over.
"""
from __future__ import annotations

from appliance.lines import CallerId
from drivers.sip.errors import SipSyntaxError
from drivers.sip.message import SipRequest
from drivers.sip.refer import parse_replaces


def caller_id_of(request: SipRequest) -> CallerId:
    """From the From identity (the URI), never from display-name text."""
    uri = request.from_addr.uri
    name = request.from_addr.display_name
    privacy = {p.strip() for p in (request.headers.get("Privacy") or "").lower().split(";")}
    user = uri.user
    if user is None or user.lower() == "anonymous" or uri.host == "anonymous.invalid" or privacy & {"id", "user"}:
        return CallerId(None, None, "withheld")
    return CallerId(user.split(";")[0], name)


def replaces_of(invite: SipRequest) -> tuple[str, str, str] | None:
    value = invite.headers.get("Replaces")
    try:
        return parse_replaces(value) if value else None
    except SipSyntaxError:
        return None  # an unreadable Replaces: an ordinary new call
