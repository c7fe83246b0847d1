"""The SIP line: UDP+TCP(+TLS) transports, the user agent, one ``SipCall`` per INVITE, and
the ``OutgoingSipCall``s it places (``dial_extension``: a registered desk phone; ``dial_trunk``).

Each new call gets its own RTP session, then is handed to the appliance's
``IncomingCallHandler`` in a named task. In-dialog requests reach the call of their dialog,
inbound or outgoing, by (Call-ID, our tag, their tag). ``stop()`` ends every active call
(503/CANCEL before answer, BYE after) and waits a bounded time for the BYEs to complete.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, IncomingCallHandler
from drivers.sip.bindings_file import BindingsFile
from drivers.sip.call import SipCall
from drivers.sip.config import SipLineConfig
from drivers.sip.dialling import extension_destination, trunk_destination
from drivers.sip.dialog import read_offer
from drivers.sip.digest import DigestServer
from drivers.sip.guard import GuardConfig, GuardStatistics, SourceGuard
from drivers.sip.info import answer_info
from drivers.sip.message import SipRequest
from drivers.sip.outgoing import Destination, OutgoingSipCall
from drivers.sip.qualify import Qualifier, Reachability
from drivers.sip.registrar import Binding, Registrar, RegistrarConfig
from drivers.sip.tls import resolve_files, server_context
from drivers.sip.transport import Connection, SipTransports, route_source_ip
from drivers.sip.trunk import TrunkFailure, TrunkRegistration, TrunkState, TrunkStatus, trunk_for_line
from drivers.sip.useragent import ServerTransaction, UserAgent, new_tag
from media.rtp import RtpSession

__all__ = ["SipLine", "SipLineConfig", "SipLineStatistics"]

log = logging.getLogger(__name__)

STOP_BYE_WAIT_S = 2.0  # on stop, time given to BYEs to be answered (a LAN peer answers in ms)
STOP_HANDLER_WAIT_S = 2.0  # on stop, time given to cancelled handler tasks to finish
MAX_CALLS = 500  # beyond this, new INVITEs get 503 (about 2x the RTP capacity of one core)


@dataclass(frozen=True, slots=True)
class SipLineStatistics:
    active_calls: int
    calls_total: int
    rejected_messages: int


class SipLine:
    def __init__(self, config: SipLineConfig, handler: IncomingCallHandler) -> None:
        self.config = config
        self._handler = handler
        self._transports: SipTransports | None = None
        self._ua: UserAgent | None = None
        self._calls: dict[tuple[str, str, str], SipCall | OutgoingSipCall] = {}  # by (Call-ID, our tag, their tag)
        self._outgoing: set[OutgoingSipCall] = set()  # every outgoing call until it ends (ringing ones too)
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls_total = 0
        self._accepting = False
        self._guard: SourceGuard | None = None
        self._registrar: Registrar | None = None
        self._qualifier: Qualifier | None = None
        self._trunk: TrunkRegistration | None = None
        self._bindings_file: BindingsFile | None = None

    @property
    def udp_port(self) -> int:
        return self._transports.udp_port if self._transports else 0

    @property
    def tcp_port(self) -> int:
        return self._transports.tcp_port if self._transports else 0

    @property
    def tls_port(self) -> int:
        return self._transports.tls_port if self._transports else 0

    @property
    def active_calls(self) -> int:
        """Calls up or ringing, inbound and outgoing."""
        return len({*self._calls.values(), *self._outgoing})

    def statistics(self) -> SipLineStatistics:
        rejected = self._ua.rejected if self._ua else 0
        return SipLineStatistics(self.active_calls, self._calls_total, rejected)

    def guard_statistics(self) -> GuardStatistics | None:
        if self._guard is None or self._ua is None:
            return None
        return self._guard.statistics(self._ua.now())

    def bindings(self, extension: str) -> tuple[Binding, ...]:
        """The phones currently registered for ``extension`` (empty without a registrar)."""
        if self._registrar is None or self._ua is None:
            return ()
        return self._registrar.location.bindings(extension, self._ua.now())

    def reachability(self, binding: Binding) -> Reachability:
        """Whether that phone answers (UDP: its last OPTIONS; TCP/TLS: its connection is open)."""
        return self._qualifier.reachability(binding) if self._qualifier is not None else Reachability(None)

    def reachable(self, extension: str) -> bool | None:
        """True: a phone of ``extension`` answers; False: none does; None: not registered or not known yet."""
        return self._qualifier.reachable(extension) if self._qualifier is not None else None

    @property
    def trunk(self) -> TrunkRegistration | None:
        return self._trunk

    def trunk_status(self) -> TrunkStatus | None:
        """Registered / failing (with reason) for the configured trunk; None without one."""
        if self._trunk is None or not self.config.trunk_register:
            return None
        return self._trunk.status()

    def _build_security(self) -> None:
        cfg = self.config
        if cfg.guard:
            self._guard = SourceGuard(GuardConfig(cfg.rate_limit_per_s, cfg.rate_limit_burst,
                                                  cfg.ban_after_failures, cfg.ban_window_s, cfg.ban_s,
                                                  cfg.trusted_networks))
        if cfg.users:
            auth = DigestServer(cfg.realm, dict(cfg.users), cfg.auth_algorithms)
            self._registrar = Registrar(auth, RegistrarConfig(cfg.register_min_expires,
                                                              cfg.register_max_expires,
                                                              cfg.register_default_expires))

    async def start(self) -> None:
        if self.config.progress_status not in (180, 183):
            raise ValueError(f"progress_status must be 180 or 183, not {self.config.progress_status}")
        self._build_security()
        self._ua = UserAgent(self, server_name=self.config.server_name, guard=self._guard,
                             on_register=self._on_register if self._registrar is not None else None)
        cfg = self.config
        tls_context = None
        if cfg.tls:  # TlsSetupError (bad paths, mismatched pair) stops the start with a clear message
            hosts = tuple(h for h in (cfg.host, cfg.advertised_ip) if h)
            tls_context = server_context(resolve_files(cfg.tls_cert, cfg.tls_key, cfg.tls_dir, hosts))
        self._transports = SipTransports(cfg.host, cfg.port, self._ua.on_message, tcp=cfg.tcp,
                                         tls_context=tls_context, tls_port=cfg.tls_port)
        restored: tuple[str, ...] = ()
        if self._registrar is not None and cfg.bindings_file:  # loaded before any REGISTER can arrive
            self._bindings_file = BindingsFile(cfg.bindings_file, self._registrar.location, self._ua.now,
                                               dict(cfg.users), cfg.realm, cfg.register_max_expires, cfg.line_id)
            restored = await self._bindings_file.load()
        await self._transports.start()
        if self._registrar is not None:
            self._qualifier = Qualifier(self._ua, self._registrar.location, cfg.qualify_s, self._transports,
                                        lambda conn: cfg.advertised_ip or self._local_ip_for(conn.peer[0]))
            for aor in restored:  # know within seconds whether the restored UDP phones still answer
                self._qualifier.watch(aor, at_once=True)
        self._accepting = True
        if self.config.trunk_registrar:
            assert self._transports is not None and self._ua is not None
            self._trunk = trunk_for_line(cfg, self._ua, self._transports, self._local_ip_for)
            if self.config.trunk_register:
                self._trunk.start()

    async def stop(self) -> None:
        self._accepting = False
        if self._trunk is not None:
            await self._trunk.stop()
        if self._qualifier is not None:
            self._qualifier.stop()  # before waiting for BYEs: an OPTIONS in flight is not awaited
        for call in [*self._calls.values(), *self._outgoing]:
            await call.hangup(HangupCause.SHUTDOWN)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=STOP_HANDLER_WAIT_S)
            for task in pending:
                log.warning("SIP line: call task %s did not stop in %.1fs", task.get_name(), STOP_HANDLER_WAIT_S)
        ua = self._ua
        if ua is not None:
            try:
                async with asyncio.timeout(STOP_BYE_WAIT_S):
                    await ua.wait_client_idle()
            except TimeoutError:
                log.warning("SIP line: %d BYE(s) unanswered after %.1fs", ua.pending_client_transactions(),
                            STOP_BYE_WAIT_S)
            ua.close()
        if self._bindings_file is not None:  # no REGISTER is handled any more: the final state
            await self._bindings_file.close()
        if self._transports is not None:
            await self._transports.close()
        log.info("SIP line %s stopped", self.config.line_id)

    # ---- TransactionUser ------------------------------------------------------
    def on_invite(self, request: SipRequest, txn: ServerTransaction) -> None:
        called = request.uri.user or ""
        if self.config.numbers and called not in self.config.numbers:
            txn.respond(404, to_tag=new_tag())
            self._ua.report_failure(txn.conn, f"INVITE for unknown number {called[:32]!r}")
            return
        if not self._accepting or self.active_calls >= MAX_CALLS:
            txn.respond(503, to_tag=new_tag(), extra=(("Retry-After", "30"),))
            return
        # no SDP: a late offer, we offer in the 200 (drivers.sip.call)
        read = read_offer(txn, ip_version=6 if ":" in self._rtp_host() else 4, to_tag=new_tag())
        if read is None:
            return
        offer, negotiated, timer = read.offer, read.negotiated, read.timer
        cfg = self.config
        local_ip, contact = self._local_contact(txn.conn)
        rtp = self._new_rtp()
        call = SipCall(ua=self._ua, txn=txn, offer=offer, negotiated=negotiated, rtp=rtp,
                       local_ip=local_ip, contact=contact,
                       line_id=cfg.line_id, on_end=self._call_ended, progress_status=cfg.progress_status,
                       session_timer=timer)
        self._calls[call.dialog_key] = call
        self._calls_total += 1
        log.info("SIP call %s: INVITE from %s (%s) to %s, %s", call.call_id, call.caller.number,
                 request.from_addr.uri, call.called,
                 "no SDP (late offer)" if negotiated is None
                 else negotiated.codec + (f" over SRTP ({negotiated.crypto.suite})" if negotiated.crypto else ""))
        task = asyncio.get_running_loop().create_task(self._run_call(call), name=f"sip-call-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_in_dialog(self, request: SipRequest, txn: ServerTransaction) -> None:
        call = self._calls.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))
        if call is None:
            txn.respond(481)
        elif call.dialog is not None and not call.dialog.in_order(request):
            txn.respond(500, reason="Request Out of Order")
        elif request.method == "BYE":
            call.on_bye(txn)
        elif request.method in ("INVITE", "UPDATE"):
            call.on_reinvite(txn)
        elif request.method == "REFER":
            call.refer_received(txn)
        elif request.method == "PRACK" and isinstance(call, SipCall):
            call.on_prack(txn)
        elif request.method == "INFO":  # keys from PBXs that send them in INFO instead of RFC 4733
            if (key := answer_info(txn)) is not None:
                call.audio.deliver_dtmf(key)
        else:  # (a PRACK for an outgoing call: we never send reliable 18x there)
            txn.respond(481 if request.method == "PRACK" else 501)

    def _on_register(self, request: SipRequest, txn: ServerTransaction) -> None:
        assert self._registrar is not None and self._ua is not None
        conn = txn.conn
        transport = getattr(conn, "transport", "TCP" if conn.reliable else "UDP").lower()
        outcome = self._registrar.handle(request, conn.peer, transport, self._ua.now())
        txn.respond(outcome.status, reason=outcome.reason, to_tag=new_tag(), extra=outcome.headers)
        if outcome.failure is not None:
            log.debug("SIP REGISTER from %s:%s refused: %s", conn.peer[0], conn.peer[1], outcome.failure)
            self._ua.report_failure(conn, outcome.failure)
        elif outcome.changed and outcome.user:
            count = len(self._registrar.location.bindings(outcome.user, self._ua.now()))
            log.info("SIP extension %s: %d contact(s) registered (REGISTER from %s:%s)", outcome.user, count,
                     conn.peer[0], conn.peer[1])
            if self._qualifier is not None:
                self._qualifier.watch(outcome.user)
            if self._bindings_file is not None:
                self._bindings_file.changed()

    def on_ack(self, request: SipRequest) -> None:
        call = self._calls.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))
        if isinstance(call, OutgoingSipCall):
            call.on_ack(request)  # may carry the answer to the offer we put in a 200
        elif call is not None:
            call.on_ack(request)  # carries the answer when the INVITE had no SDP

    def on_cancel(self, invite_txn: ServerTransaction) -> None:
        call = invite_txn.owner
        if isinstance(call, SipCall):
            call.on_cancel()
        else:  # a re-INVITE or a refused INVITE: answer 487 if still possible
            invite_txn.respond(487, to_tag=new_tag())

    # ---- internals ------------------------------------------------------------
    @staticmethod
    def _wildcard(host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_unspecified
        except ValueError:
            return False

    def _local_ip_for(self, peer_ip: str) -> str:
        if not self._wildcard(self.config.host):
            return self.config.host
        return route_source_ip(peer_ip)

    def _local_contact(self, conn: Connection) -> tuple[str, str]:
        """Our address towards ``conn``'s peer and our Contact for that transport."""
        local_ip = self.config.advertised_ip or self._local_ip_for(conn.peer[0])
        scheme = getattr(conn, "transport", "TCP" if conn.reliable else "UDP")
        port = {"TLS": self._transports.tls_port, "TCP": self._transports.tcp_port}.get(scheme,
                                                                                        self._transports.udp_port)
        host = f"[{local_ip}]" if ":" in local_ip else local_ip
        transport = f";transport={scheme.lower()}" if scheme != "UDP" else ""
        return local_ip, f"<sip:branchline@{host}:{port}{transport}>"

    def _rtp_host(self) -> str:
        cfg = self.config
        return cfg.rtp_host or (cfg.host if not self._wildcard(cfg.host) else "0.0.0.0")

    def _new_rtp(self) -> RtpSession:
        return RtpSession(self._rtp_host(), port_range=self.config.rtp_port_range, latching=self.config.rtp_latching)

    def _call_ended(self, call: SipCall | OutgoingSipCall) -> None:
        if self._calls.get(call.dialog_key) is call:
            del self._calls[call.dialog_key]
        if isinstance(call, OutgoingSipCall):
            self._outgoing.discard(call)

    def _dialog_confirmed(self, call: OutgoingSipCall) -> None:
        self._calls[call.dialog_key] = call

    # ---- outgoing calls ------------------------------------------------------------------
    def find_dialog(self, call_id: str, tag_a: str, tag_b: str) -> SipCall | OutgoingSipCall | None:
        """The call of the dialog (Call-ID, tags in either order), e.g. to resolve a Replaces."""
        return self._calls.get((call_id, tag_a, tag_b)) or self._calls.get((call_id, tag_b, tag_a))

    async def dial_extension(self, extension: str, caller: CallerId | None = None) -> OutgoingSipCall:
        """Ring the desk phone registered for ``extension`` (its most recent registration)."""
        if self._ua is None or self._transports is None or not self._accepting:
            raise DialFailed(DialFailure.LINE_DOWN, "the SIP line is not running")
        bindings = self.bindings(extension)
        if not bindings:
            raise DialFailed(DialFailure.LINE_DOWN, f"extension {extension} is not registered")
        answering = [b for b in bindings if self.reachability(b).reachable is not False]
        if not answering:
            raise DialFailed(DialFailure.LINE_DOWN, f"extension {extension} is not reachable: "
                                                    f"{self.reachability(bindings[-1]).reason}")
        binding = answering[-1]  # sorted by expiry: the last one registered most recently
        if binding.transport == "udp":
            conn = self._transports.udp_connection(binding.source)
        else:
            conn = self._transports.stream_connection(binding.transport, binding.source)
        if conn is None:
            raise DialFailed(DialFailure.LINE_DOWN, f"extension {extension}: its {binding.transport.upper()} "
                                                    "connection is closed")
        local_ip, contact = self._local_contact(conn)
        dest = extension_destination(extension, binding.contact, conn, local_ip, contact, caller,
                                     self.config.server_name)
        return await self._dial(dest, extension)

    async def dial_trunk(self, number: str, caller: CallerId | None = None) -> OutgoingSipCall:
        """Call ``number`` through the configured trunk (a 401/407 is answered with its credentials)."""
        if self._trunk is None or self._ua is None or not self._accepting:
            raise DialFailed(DialFailure.LINE_DOWN, "no SIP trunk is configured")
        status = self._trunk.status()
        if self.config.trunk_register and status.state is TrunkState.FAILING:
            # the carrier refuses or does not answer our REGISTER: its calls would fail the same way,
            # so the dial plan moves on to the next line (a GSM modem, say) at once
            raise DialFailed(DialFailure.LINE_DOWN, f"trunk not registered: {status.reason}")
        try:
            conn, hostport = await self._trunk.destination()
        except TrunkFailure as exc:
            raise DialFailed(DialFailure.LINE_DOWN, f"trunk: {exc}") from None
        local_ip = hostport.rsplit(":", 1)[0].strip("[]")
        dest = trunk_destination(self.config, number, self._trunk.config.domain, conn, local_ip,
                                 f"<sip:branchline@{hostport}>", caller)
        return await self._dial(dest, number)

    async def _dial(self, dest: Destination, called: str) -> OutgoingSipCall:
        if self.active_calls >= MAX_CALLS:
            raise DialFailed(DialFailure.LINE_BUSY, f"{MAX_CALLS} calls already up")
        call = OutgoingSipCall(ua=self._ua, destination=dest, rtp=self._new_rtp(), line_id=self.config.line_id,
                               called=called, on_dialog=self._dialog_confirmed, on_end=self._call_ended)
        self._outgoing.add(call)
        self._calls_total += 1
        try:
            await call.start()
        except asyncio.CancelledError:  # the dialler gave up while RTP was binding: nothing was sent yet
            await call.hangup(HangupCause.CANCELLED)
            raise
        return call

    async def _run_call(self, call: SipCall) -> None:
        try:
            await call.audio.start()
        except OSError as exc:
            log.error("SIP call %s: cannot open RTP: %s", call.call_id, exc)
            await call.hangup(HangupCause.ERROR)
            return
        if call.ended:  # cancelled while we were binding
            call.audio.close()
            return
        call.media_ready()
        try:
            await self._handler(call)
        except Exception:
            log.exception("SIP call %s: call handler failed; hanging up", call.call_id)
            await call.hangup(HangupCause.ERROR)
        except asyncio.CancelledError:
            await call.hangup(HangupCause.SHUTDOWN)
            raise
