"""Call transfer signalling: REFER (RFC 3515) and Replaces (RFC 3891). Pure code.

``parse_refer`` reads an in-dialog REFER into a ``ReferRequest``: the Refer-To target and,
for an attended transfer, the dialog named by an embedded ``?Replaces=`` header (URL-escaped
inside the URI). ``parse_replaces`` reads a Replaces header value. ``sipfrag`` and
``notify_headers`` build the NOTIFYs that report the transfer's progress (RFC 3515 §2.4.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from drivers.sip.errors import SipSyntaxError
from drivers.sip.message import REASONS, SipRequest
from drivers.sip.uri import parse_name_addr, parse_params

REFER_EVENT = "refer"
NOTIFY_EXPIRES_S = 300  # the implicit subscription lives this long at most (the callback is bounded by it)


@dataclass(frozen=True, slots=True)
class ReferRequest:
    target_uri: str  # Refer-To URI without its ?headers part
    target_user: str | None  # its user part (the number or extension to transfer to)
    replaces: tuple[str, str, str] | None  # (call_id, to_tag, from_tag) of the dialog to replace
    referred_by: str | None  # the Referred-By URI, when given


def parse_replaces(value: str) -> tuple[str, str, str]:
    """``call-id;to-tag=a;from-tag=b[;early-only]`` -> (call_id, to_tag, from_tag)."""
    call_id, sep, rest = value.strip().partition(";")
    call_id = call_id.strip()
    if not call_id or not sep or " " in call_id:
        raise SipSyntaxError(f"bad Replaces {value[:80]!r}")
    params = dict(parse_params(rest))
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not to_tag or not from_tag:
        raise SipSyntaxError(f"Replaces without to-tag and from-tag: {value[:80]!r}")
    return call_id, to_tag, from_tag


def _embedded_headers(raw: str) -> dict[str, str]:
    """``Replaces=abc%40h%3Bto-tag%3D1&Require=replaces`` -> {"replaces": "abc@h;to-tag=1", ...}."""
    out: dict[str, str] = {}
    for part in raw.split("&"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            out[unquote(name).strip().lower()] = unquote(value)
    return out


def parse_refer(request: SipRequest) -> ReferRequest:
    """The transfer a REFER asks for. ``SipSyntaxError`` (answer 400) when it names none."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise SipSyntaxError("REFER needs exactly one Refer-To")
    addr = parse_name_addr(values[0])
    uri = addr.uri
    replaces = None
    if uri.headers:
        value = _embedded_headers(uri.headers).get("replaces")
        if value is not None:
            replaces = parse_replaces(value)
    target = str(type(uri)(uri.scheme, uri.user, uri.host, uri.port, uri.params, ""))
    referred_by = None
    by = request.headers.get("Referred-By")
    if by:
        try:
            referred_by = str(parse_name_addr(by).uri)
        except SipSyntaxError:
            referred_by = None  # informational only: an unreadable one does not spoil the transfer
    return ReferRequest(target, uri.user, replaces, referred_by)


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The message/sipfrag body of a refer NOTIFY: just the status line."""
    return f"SIP/2.0 {status} {reason or REASONS.get(status, 'Unknown')}\r\n".encode("ascii")


def notify_headers(final: bool, contact: str, event_id: int | None = None) -> tuple[tuple[str, str], ...]:
    """Event/Subscription-State/Content-Type of a refer NOTIFY (terminated once the result is known).
    ``event_id``: the REFER's CSeq number, naming its subscription when it is not the dialog's first
    (RFC 3515 §2.4.6: ``Event: refer;id=<CSeq>``)."""
    state = "terminated;reason=noresource" if final else f"active;expires={NOTIFY_EXPIRES_S}"
    event = REFER_EVENT if event_id is None else f"{REFER_EVENT};id={event_id}"
    return (("Event", event), ("Subscription-State", state), ("Contact", contact),
            ("Content-Type", "message/sipfrag;version=2.0"))
