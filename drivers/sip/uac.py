"""The requests of an outgoing call before its dialog exists, and what its failures mean. Pure code.

``InviteRequests`` builds our INVITE (§8.1.1, ``Supported: timer``), its re-send with digest
credentials after a 401/407 (new CSeq and branch, same Call-ID and From tag, §22.2) or with
the ``Min-SE`` of a 422 as our Session-Expires (RFC 4028 §7.1), and the CANCEL of the INVITE
in flight (§9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via).
``Destination`` says where and as whom the call goes. ``dial_failure`` maps a final status
to the ``DialFailure`` the appliance sees.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from appliance.lines import DialFailure, HangupCause
from drivers.sip.digest import authorization, pick_challenge
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, SipResponse, parse_message, serialize_request
from drivers.sip.session_timer import min_se_of
from drivers.sip.transport import Connection
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


@dataclass(frozen=True, slots=True)
class Destination:
    """Where and as whom an outgoing call goes: the line fills this in."""

    request_uri: str
    from_value: str  # without tag
    to_value: str
    conn: Connection  # first hop (the phone's registered source / connection, the trunk)
    local_ip: str  # for SDP
    contact: str  # our Contact (<sip:branchline@ip:port;transport=..>)
    extra: tuple[tuple[str, str], ...] = ()  # Privacy, P-Asserted-Identity ...
    credentials: Credentials | None = None  # answers a 401/407 once
    follow_next_hop: bool = True  # False: in-dialog requests keep using ``conn`` (a registered phone, NAT)


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
        self.session_expires: int | None = None  # set from a 422: asked for in every INVITE from then on
        self._auth_tried = False  # one 401/407 answered (again after a 422's new INVITE)
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
            ("Supported", "timer, replaces"),
            ("User-Agent", self._user_agent),
            *self._extra,
        ]
        if self.session_expires is not None:
            items += [("Session-Expires", str(self.session_expires)), ("Min-SE", str(self.session_expires))]
        if auth is not None:
            items.append(auth)
        items.append(("Content-Type", "application/sdp"))
        data = serialize_request("INVITE", self.request_uri, Headers(items), self.body)
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        self.current = Sent(data, request)
        return self.current

    def retry(self, response: SipResponse, creds: Credentials | None) -> Sent | None:
        """The INVITE again after a 401/407 (once, with ``creds``) or a 422 (once, asking for its
        Min-SE, RFC 4028 §7.1); None when there is nothing (more) to try."""
        if response.status == 422:
            min_se = min_se_of(response)
            if self.session_expires is not None or not min_se:
                return None
            self.session_expires = min_se
            self._auth_tried = False  # the new INVITE may be challenged again
            return self.invite()
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        challenge = pick_challenge(response.headers.get_all(name))
        if creds is None or self._auth_tried or challenge is None:
            return None
        self._auth_tried = True
        header = "Proxy-Authorization" if response.status == 407 else "Authorization"
        value = authorization(challenge, "INVITE", self.request_uri, creds.username, creds.password, 1)
        return self.invite((header, value))

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
