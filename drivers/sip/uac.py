"""The requests of an outgoing call before its dialog exists, and what its failures mean. Pure code.

``InviteRequests`` builds our INVITE (§8.1.1), its re-send with digest credentials after a
401/407 (new CSeq and branch, same Call-ID and From tag, §22.2) and the CANCEL of the
INVITE in flight (§9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via).
``dial_failure`` maps a final status to the ``DialFailure`` the appliance sees.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.lines import DialFailure, HangupCause
from drivers.sip.digest import authorization
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, parse_message, serialize_request
from drivers.sip.useragent import ALLOW, new_branch, new_tag

# Final statuses (other than 2xx and the 401/407 we answer) -> why the dial failed.
FAILURE_BY_STATUS: dict[int, DialFailure] = {
    486: DialFailure.BUSY, 600: DialFailure.BUSY,
    408: DialFailure.NO_ANSWER, 480: DialFailure.NO_ANSWER, 487: DialFailure.NO_ANSWER,
    401: DialFailure.REJECTED, 403: DialFailure.REJECTED, 407: DialFailure.REJECTED, 603: DialFailure.REJECTED,
    404: DialFailure.UNREACHABLE, 484: DialFailure.UNREACHABLE,
}


# How the end of a failed dial is reported by wait_ended().
FAILURE_CAUSE: dict[DialFailure, HangupCause] = {
    DialFailure.BUSY: HangupCause.REJECTED,
    DialFailure.NO_ANSWER: HangupCause.TIMEOUT,
    DialFailure.REJECTED: HangupCause.REJECTED,
    DialFailure.UNREACHABLE: HangupCause.ERROR,
    DialFailure.LINE_DOWN: HangupCause.LINE_LOST,
    DialFailure.LINE_BUSY: HangupCause.REJECTED,
    DialFailure.CANCELLED: HangupCause.CANCELLED,
    DialFailure.ERROR: HangupCause.ERROR,
}


def dial_failure(status: int, *, we_cancelled: bool = False) -> DialFailure:
    """The DialFailure of a final non-2xx response (487 after our CANCEL is CANCELLED)."""
    if status == 487 and we_cancelled:
        return DialFailure.CANCELLED
    found = FAILURE_BY_STATUS.get(status)
    if found is not None:
        return found
    if 300 <= status < 400 or 500 <= status < 600:  # we do not follow redirects
        return DialFailure.UNREACHABLE
    if status >= 600:
        return DialFailure.REJECTED
    return DialFailure.ERROR  # 488 (no common codec), 420, 415 ...: our request was not acceptable


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Sent:
    data: bytes
    request: SipRequest


class InviteRequests:
    """Everything about one outgoing INVITE that stays fixed across its auth round."""

    def __init__(self, *, request_uri: str, from_value: str, to_value: str, contact: str, via_hostport: str,
                 transport: str, body: bytes, extra: tuple[tuple[str, str], ...] = (),
                 user_agent: str = "Branchline") -> None:
        self.request_uri = request_uri
        self.call_id = f"{secrets.token_hex(12)}@branchline"
        self.local_tag = new_tag()
        self.from_value = f"{from_value};tag={self.local_tag}"
        self.to_value = to_value
        self.contact = contact
        self._via_hostport = via_hostport
        self._transport = transport
        self.body = body  # the SDP offer; set before the first invite()
        self._extra = extra
        self._user_agent = user_agent
        self.cseq = secrets.randbelow(10000) + 1
        self.current: Sent | None = None

    def invite(self, auth: tuple[str, str] | None = None) -> Sent:
        """A new INVITE transaction (new branch). ``auth``: (header name, value) answering a challenge."""
        if self.current is not None:
            self.cseq += 1
        items = [
            ("Via", f"SIP/2.0/{self._transport} {self._via_hostport};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.from_value),
            ("To", self.to_value),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} INVITE"),
            ("Contact", self.contact),
            ("Allow", ALLOW),
            ("Supported", "replaces"),
            ("User-Agent", self._user_agent),
            *self._extra,
        ]
        if auth is not None:
            items.append(auth)
        items.append(("Content-Type", "application/sdp"))
        data = serialize_request("INVITE", self.request_uri, Headers(items), self.body)
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        self.current = Sent(data, request)
        return self.current

    def invite_with_credentials(self, status: int, challenge: dict[str, str], creds: Credentials) -> Sent:
        """The INVITE again, answering a 401 (Authorization) or 407 (Proxy-Authorization)."""
        name = "Proxy-Authorization" if status == 407 else "Authorization"
        value = authorization(challenge, "INVITE", self.request_uri, creds.username, creds.password, 1)
        return self.invite((name, value))

    def cancel(self) -> Sent:
        """CANCEL of the current INVITE (§9.1)."""
        assert self.current is not None
        invite = self.current.request
        items = [("Via", invite.headers.get_all("Via")[0]), ("Max-Forwards", "70"),
                 ("From", self.from_value), ("To", self.to_value), ("Call-ID", self.call_id),
                 ("CSeq", f"{invite.cseq.number} CANCEL")]
        items += [("Route", r) for r in invite.headers.get_all("Route")]
        data = serialize_request("CANCEL", self.request_uri, Headers(items))
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        return Sent(data, request)
