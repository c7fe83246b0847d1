"""The asyncio shell around the SIP core: parse, match transactions, run their timers.

``UserAgent`` answers what needs no call state itself (parse errors, OPTIONS,
unknown methods, CANCEL/ACK matching) and hands INVITE, ACK-for-2xx, CANCEL and
in-dialog requests to its ``TransactionUser`` (the SIP line).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Callable, Protocol

from drivers.sip.errors import SipParseError, TransactionError
from drivers.sip.guard import SourceGuard
from drivers.sip.message import (
    SipRequest,
    SipResponse,
    error_response,
    parse_message,
    response_bytes,
)
from drivers.sip.stun import binding_response, is_stun
from drivers.sip.transaction import (
    Action,
    AnswerRetransmitter,
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    SetTimer,
    Terminated,
    TimedOut,
    TimerName,
    cancel_target_key,
    client_key,
    server_key,
)
from drivers.sip.transport import Connection

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, PRACK, INFO"
ACCEPT = "application/sdp"
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({"timer", "replaces"})  # RFC 4028 timers, RFC 3891
INVITE_EXTENSIONS = SUPPORTED_EXTENSIONS | {"100rel"}  # a new INVITE may require reliable 18x (drivers.sip.prack)
DIALOG_METHODS = frozenset({"INVITE", "BYE", "UPDATE", "REFER", "PRACK", "INFO"})
REJECT_LOG_INTERVAL_S = 10.0  # at most one WARNING per this interval for unparseable messages


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


class TransactionUser(Protocol):
    def on_invite(self, request: SipRequest, txn: "ServerTransaction") -> None: ...
    def on_in_dialog(self, request: SipRequest, txn: "ServerTransaction") -> None: ...
    def on_ack(self, request: SipRequest) -> None: ...
    def on_cancel(self, invite_txn: "ServerTransaction") -> None: ...


class _Running:
    """A transaction (or 2xx retransmitter) plus what the shell needs to drive it."""

    __slots__ = ("core", "conn", "key", "handles", "on_deliver", "on_timeout", "table")

    def __init__(self, core, conn: Connection, key, table: dict | None) -> None:
        self.core = core
        self.conn = conn
        self.key = key
        self.table = table
        self.handles: list[asyncio.TimerHandle] = []
        self.on_deliver: Callable[[SipResponse], None] | None = None
        self.on_timeout: Callable[[TimerName], None] | None = None


class ServerTransaction(_Running):
    """What the TU gets with a request: ``respond(...)`` sends through the transaction."""

    __slots__ = ("request", "ua", "owner", "merge")

    def __init__(self, ua: "UserAgent", request: SipRequest, conn: Connection, key, core) -> None:
        super().__init__(core, conn, key, ua._server)
        self.request = request
        self.ua = ua
        self.owner: object = None  # the call an INVITE belongs to
        self.merge: tuple | None = None  # its merged-request key while it runs (§8.2.2.2)

    @property
    def final_sent(self) -> bool:
        return self.core.state.value not in ("trying", "proceeding")

    def respond(self, status: int, *, reason: str | None = None, to_tag: str | None = None,
                extra: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> bytes | None:
        """Send a response; returns its bytes, or None when the transaction is past that point."""
        data = response_bytes(self.request, status, reason, to_tag=to_tag,
                              extra=(("Server", self.ua.server_name),) + extra, body=body, source=self.conn.peer)
        try:
            actions = self.core.send_response(status, data, self.ua.now())
        except TransactionError as exc:
            log.debug("SIP: response %d not sent: %s", status, exc)
            return None
        self.ua.run(self, actions)
        return data


class UserAgent:
    def __init__(self, tu: TransactionUser, *, server_name: str = "Branchline",
                 guard: SourceGuard | None = None,
                 on_register: Callable[[SipRequest, "ServerTransaction"], None] | None = None) -> None:
        self.tu = tu
        self.server_name = server_name
        self.guard = guard
        self._on_register = on_register  # the registrar; without one REGISTER gets 501
        self.allow = ALLOW + (", REGISTER" if self._on_register is not None else "")
        self._server: dict[tuple, ServerTransaction] = {}
        self._merged: dict[tuple, ServerTransaction] = {}  # (From tag, Call-ID, CSeq) of out-of-dialog requests
        self._client: dict[tuple, _Running] = {}
        self._others: set[_Running] = set()
        self._loop = asyncio.get_running_loop()
        self._client_idle = asyncio.Event()
        self._client_idle.set()
        self._last_reject_log = -REJECT_LOG_INTERVAL_S
        self.rejected = 0  # requests refused by the parser

    def now(self) -> float:
        return self._loop.time()

    # ---- driving transactions ----------------------------------------------
    def run(self, entry: _Running, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                entry.conn.send(action.data)
            elif isinstance(action, SetTimer):
                entry.handles = [h for h in entry.handles if not h.cancelled()][-8:]
                entry.handles.append(self._loop.call_at(action.deadline, self._fire, entry, action.name))
            elif isinstance(action, Deliver):
                if entry.on_deliver is not None:
                    entry.on_deliver(action.response)
            elif isinstance(action, TimedOut):
                if entry.on_timeout is not None:
                    entry.on_timeout(action.timer)
            elif isinstance(action, Terminated):
                self._forget(entry)

    def _fire(self, entry: _Running, name: TimerName) -> None:
        try:
            self.run(entry, entry.core.on_timer(name, self.now()))
        except Exception:
            log.exception("SIP: error running timer %s", name)

    def _forget(self, entry: _Running) -> None:
        for handle in entry.handles:
            handle.cancel()
        entry.handles.clear()
        if entry.table is not None and entry.table.get(entry.key) is entry:
            del entry.table[entry.key]
        merge = getattr(entry, "merge", None)
        if merge is not None and self._merged.get(merge) is entry:
            del self._merged[merge]
        self._others.discard(entry)
        self._check_client_idle()

    def _check_client_idle(self) -> None:
        """Idle once every non-INVITE client transaction (BYE, NOTIFY) has its final answer: Timer K
        only absorbs retransmitted answers, and a re-INVITE's Timer M is not awaited."""
        if all(key[1] == "INVITE" or entry.core.final_status is not None for key, entry in self._client.items()):
            self._client_idle.set()

    def close(self) -> None:
        """Cancel every timer and forget every transaction (the line is stopping)."""
        for entry in [*self._server.values(), *self._client.values(), *self._others]:
            self._forget(entry)

    def pending_client_transactions(self) -> int:
        return len(self._client)

    async def wait_client_idle(self) -> None:
        """Return once no client transaction (BYE) is waiting for its answer."""
        await self._client_idle.wait()

    # ---- outgoing -------------------------------------------------------------
    def send_request(self, data: bytes, branch: str, method: str, conn: Connection,
                     on_final: Callable[[int], None] | None = None, *,
                     on_response: Callable[[SipResponse | None], None] | None = None) -> None:
        """Send a non-INVITE request (BYE, REGISTER) with retransmissions.

        ``on_final(status)`` gets the final status (408 on timeout); ``on_response`` gets the
        final response itself, or None on timeout (Timer F).
        """
        core = NonInviteClientTransaction(data, conn.reliable)
        key = client_key(branch, method)
        entry = _Running(core, conn, key, self._client)

        def deliver(r: SipResponse) -> None:
            if r.status < 200:
                return
            if on_final is not None:
                on_final(r.status)
            if on_response is not None:
                on_response(r)

        def timeout(_t: TimerName) -> None:
            if on_final is not None:
                on_final(408)
            if on_response is not None:
                on_response(None)

        entry.on_deliver = deliver
        entry.on_timeout = timeout
        self._client[key] = entry
        self._client_idle.clear()
        self.run(entry, core.start(self.now()))

    def abandon_request(self, branch: str, method: str) -> None:
        """Stop retransmitting a non-INVITE request and forget it (a late answer is then a stray):
        for a caller that gives up before Timer F, such as a qualify OPTIONS."""
        entry = self._client.get(client_key(branch, method))
        if entry is not None:
            self._forget(entry)

    def send_invite(self, request: SipRequest, data: bytes, conn: Connection,
                    on_response: Callable[[SipResponse | None], None]) -> None:
        """Send an INVITE (a re-INVITE in a dialog) through an INVITE client transaction.

        ``on_response`` gets every response (provisional, final, 2xx retransmissions) and
        None on Timer B. The transaction ACKs non-2xx finals itself; the TU ACKs a 2xx.
        """
        core = InviteClientTransaction(request, data, conn.reliable)
        key = client_key(request.branch or "", "INVITE")
        entry = _Running(core, conn, key, self._client)
        entry.on_deliver = on_response
        entry.on_timeout = lambda _t: on_response(None)
        self._client[key] = entry
        self.run(entry, core.start(self.now()))

    def start_2xx(self, data: bytes, conn: Connection, on_timeout: Callable[[], None]) -> _Running:
        core = AnswerRetransmitter(data, conn.reliable)
        entry = _Running(core, conn, None, None)
        entry.on_timeout = lambda _t: on_timeout()
        self._others.add(entry)
        self.run(entry, core.start(self.now()))
        return entry

    def ack_2xx(self, entry: _Running) -> None:
        self.run(entry, entry.core.receive_ack(self.now()))

    def resend_2xx(self, entry: _Running) -> None:
        self.run(entry, entry.core.receive_retransmission(self.now()))

    # ---- incoming -------------------------------------------------------------
    def report_failure(self, conn: Connection, reason: str) -> None:
        """A failed attempt from ``conn``'s source (bad auth, unknown user, malformed message)."""
        if self.guard is not None:
            self.guard.failure(conn.peer[0], reason, self.now())

    def on_message(self, data: bytes, conn: Connection, stream: bool) -> None:
        if self.guard is not None and not self.guard.admit(conn.peer[0], self.now()):
            return  # banned or over its rate: no answer at all
        if not stream and is_stun(data):  # RFC 5626 §4.4.1 keepalive on the SIP port, never a malformed SIP message
            answer = binding_response(data, conn.peer)
            if answer is not None:
                conn.send(answer)
            return
        try:
            msg = parse_message(data, stream=stream)
        except SipParseError as err:
            self.rejected += 1
            self.report_failure(conn, f"malformed message ({err.status})")
            answer = error_response(err, new_tag(), self.server_name)
            if err.method == "ACK":
                answer = None  # never answer an ACK (§17.2.1)
            now = self.now()
            level = logging.DEBUG
            if now - self._last_reject_log >= REJECT_LOG_INTERVAL_S:  # scanners must not flood the log
                level, self._last_reject_log = logging.WARNING, now
            log.log(level, "SIP %r: %s %s: %s (%d refused so far)", conn, "refused" if answer else "dropped",
                    err.method or "message", err, self.rejected)
            if answer is not None:
                conn.send(answer)
            return
        if isinstance(msg, SipResponse):
            self._on_response(msg)
        else:
            self._on_request(msg, conn)

    def _merged_request(self, txn: ServerTransaction) -> bool:
        """§8.2.2.2: an out-of-dialog request with the From tag, Call-ID and CSeq of a transaction
        still running, but another branch, is the same request again by another path (a loop, or
        forks merging back): 482 Loop Detected, so only one copy is handled."""
        request = txn.request
        if request.to_addr.tag is not None or request.method == "CANCEL":
            return False
        merge = (request.from_addr.tag or "", request.call_id, request.cseq.number, request.method)
        if merge in self._merged:
            log.info("SIP: %s %s from %r came again by another path (merged request); 482", request.method,
                     request.call_id, txn.conn)
            txn.respond(482, to_tag=new_tag())
            return True
        txn.merge = merge
        self._merged[merge] = txn
        return False

    def _on_response(self, response: SipResponse) -> None:
        entry = self._client.get(client_key(response.branch or "", response.cseq.method))
        if entry is None:
            log.debug("SIP: stray response %d %s", response.status, response.cseq)
            return
        self.run(entry, entry.core.receive_response(response, self.now()))
        if response.status >= 200 and response.cseq.method != "INVITE":
            self._check_client_idle()

    def _on_request(self, request: SipRequest, conn: Connection) -> None:
        key = server_key(request)
        existing = self._server.get(key)
        if request.method == "ACK":
            if existing is not None and isinstance(existing.core, InviteServerTransaction):
                self.run(existing, existing.core.receive_ack(self.now()))
                if existing.core.final_status is None or existing.core.final_status >= 300:
                    return
            self.tu.on_ack(request)
            return
        if existing is not None:
            self.run(existing, existing.core.receive_retransmission(self.now()))
            return
        reliable = conn.reliable
        if request.method == "INVITE":
            txn = ServerTransaction(self, request, conn, key, InviteServerTransaction(reliable))
            self._server[key] = txn
            txn.respond(100)
        else:
            txn = ServerTransaction(self, request, conn, key, NonInviteServerTransaction(reliable))
            self._server[key] = txn
        method = request.method
        if self._merged_request(txn):
            return
        if method == "CANCEL":
            target = self._server.get(cancel_target_key(request))
            if target is None:
                txn.respond(481, to_tag=new_tag())
                return
            txn.respond(200, to_tag=getattr(target.owner, "local_tag", None) or new_tag())
            self.tu.on_cancel(target)
            return
        known = INVITE_EXTENSIONS if method == "INVITE" and request.to_addr.tag is None else SUPPORTED_EXTENSIONS
        unsupported = [t for t in request.headers.get_all("Require") if t.lower() not in known]
        if unsupported:
            txn.respond(420, to_tag=new_tag(), extra=(("Unsupported", ", ".join(unsupported)),))
            return
        if method == "OPTIONS":
            txn.respond(200, to_tag=new_tag(), extra=(("Allow", self.allow), ("Accept", ACCEPT)))
        elif method in DIALOG_METHODS:
            if request.to_addr.tag is None and method != "INVITE":
                txn.respond(481, to_tag=new_tag())
                return
            try:
                if request.to_addr.tag is None:
                    self.tu.on_invite(request, txn)
                else:
                    self.tu.on_in_dialog(request, txn)
            except Exception:  # a bug in the TU: answer 500 rather than leave the peer retrying
                log.exception("SIP: error handling %s %s", method, request.call_id)
                txn.respond(500, to_tag=new_tag())
        elif method == "REGISTER" and self._on_register is not None:
            try:
                self._on_register(request, txn)
            except Exception:
                log.exception("SIP: error handling REGISTER %s", request.call_id)
                txn.respond(500, to_tag=new_tag())
        else:
            txn.respond(501, to_tag=new_tag(), extra=(("Allow", self.allow),))
