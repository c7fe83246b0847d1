"""The SIP line: UDP+TCP transports, the user agent, and one ``SipCall`` per INVITE.

Each new call gets its own RTP session, then is handed to the appliance's
``IncomingCallHandler`` in a named task. ``stop()`` ends every active call (503
before answer, BYE after) and waits a bounded time for the BYEs to complete.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field

from appliance.lines import HangupCause, IncomingCallHandler
from drivers.sip.call import SipCall
from drivers.sip.errors import SdpError
from drivers.sip.message import SipRequest
from drivers.sip.sdp import negotiate, parse_sdp
from drivers.sip.transport import SipTransports
from drivers.sip.useragent import ServerTransaction, UserAgent, new_tag
from media.rtp import DEFAULT_PORT_RANGE, RtpSession

log = logging.getLogger(__name__)

STOP_BYE_WAIT_S = 2.0  # on stop, time given to BYEs to be answered (a LAN peer answers in ms)
STOP_HANDLER_WAIT_S = 2.0  # on stop, time given to cancelled handler tasks to finish
MAX_CALLS = 500  # beyond this, new INVITEs get 503 (about 2x the RTP capacity of one core)


@dataclass(frozen=True, slots=True)
class SipLineConfig:
    host: str = "0.0.0.0"
    port: int = 5060  # 0: ephemeral (tests); actual ports in SipLine.udp_port / tcp_port
    advertised_ip: str | None = None  # address put in SDP/Contact/Via; None: found per call
    rtp_host: str | None = None  # where RTP sockets bind; None: same as host
    rtp_port_range: tuple[int, int] | None = field(default=DEFAULT_PORT_RANGE)  # None: any port
    rtp_latching: bool = False  # follow the first RTP source (NAT); off: strict SDP address
    tcp: bool = True
    line_id: str = "sip"
    server_name: str = "Branchline"
    progress_status: int = 180  # progress(): 180 Ringing+SDP (works with every UA) or 183 Session Progress


@dataclass(frozen=True, slots=True)
class SipLineStatistics:
    active_calls: int
    calls_total: int
    rejected_messages: int


def _route_source_ip(peer_ip: str) -> str:
    """The local address the kernel would use to reach ``peer_ip`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_ip, 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class SipLine:
    def __init__(self, config: SipLineConfig, handler: IncomingCallHandler) -> None:
        self.config = config
        self._handler = handler
        self._transports: SipTransports | None = None
        self._ua: UserAgent | None = None
        self._calls: dict[tuple[str, str, str], SipCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls_total = 0
        self._accepting = False

    @property
    def udp_port(self) -> int:
        return self._transports.udp_port if self._transports else 0

    @property
    def tcp_port(self) -> int:
        return self._transports.tcp_port if self._transports else 0

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def statistics(self) -> SipLineStatistics:
        rejected = self._ua.rejected if self._ua else 0
        return SipLineStatistics(len(self._calls), self._calls_total, rejected)

    async def start(self) -> None:
        if self.config.progress_status not in (180, 183):
            raise ValueError(f"progress_status must be 180 or 183, not {self.config.progress_status}")
        self._ua = UserAgent(self, server_name=self.config.server_name)
        self._transports = SipTransports(self.config.host, self.config.port, self._ua.on_message,
                                         tcp=self.config.tcp)
        await self._transports.start()
        self._accepting = True

    async def stop(self) -> None:
        self._accepting = False
        for call in list(self._calls.values()):
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
        if self._transports is not None:
            await self._transports.close()
        log.info("SIP line %s stopped", self.config.line_id)

    # ---- TransactionUser ------------------------------------------------------
    def on_invite(self, request: SipRequest, txn: ServerTransaction) -> None:
        if not self._accepting or len(self._calls) >= MAX_CALLS:
            txn.respond(503, to_tag=new_tag(), extra=(("Retry-After", "30"),))
            return
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not request.body or ctype != "application/sdp":
            # we do not offer in the 200 (late offer) yet
            txn.respond(488 if not request.body else 415, to_tag=new_tag(),
                        extra=(("Accept", "application/sdp"),))
            return
        try:
            offer = parse_sdp(request.body)
            negotiated = negotiate(offer)
        except SdpError as exc:
            log.warning("SIP: INVITE from %s refused with %d: %s", request.from_addr.uri, exc.status, exc.detail)
            txn.respond(exc.status, to_tag=new_tag())
            return
        cfg = self.config
        local_ip = cfg.advertised_ip or self._local_ip_for(txn.conn.peer[0])
        port = self._transports.tcp_port if txn.conn.reliable else self._transports.udp_port
        host = f"[{local_ip}]" if ":" in local_ip else local_ip
        transport = ";transport=tcp" if txn.conn.reliable else ""
        rtp = RtpSession(cfg.rtp_host or (cfg.host if not self._wildcard(cfg.host) else "0.0.0.0"),
                         port_range=cfg.rtp_port_range, latching=cfg.rtp_latching)
        call = SipCall(ua=self._ua, txn=txn, offer=offer, negotiated=negotiated, rtp=rtp,
                       local_ip=local_ip, contact=f"<sip:branchline@{host}:{port}{transport}>",
                       line_id=cfg.line_id, on_end=self._call_ended, progress_status=cfg.progress_status)
        self._calls[call.dialog_key] = call
        self._calls_total += 1
        log.info("SIP call %s: INVITE from %s (%s) to %s, %s", call.call_id, call.caller.number,
                 request.from_addr.uri, call.called, negotiated.codec)
        task = asyncio.get_running_loop().create_task(self._run_call(call), name=f"sip-call-{call.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_in_dialog(self, request: SipRequest, txn: ServerTransaction) -> None:
        call = self._calls.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))
        if call is None:
            txn.respond(481)
        elif request.method == "BYE":
            call.on_bye(txn)
        elif request.method == "INVITE":
            call.on_reinvite(txn)
        else:
            txn.respond(501)

    def on_ack(self, request: SipRequest) -> None:
        call = self._calls.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))
        if call is not None:
            call.on_ack()

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
        return _route_source_ip(peer_ip)

    def _call_ended(self, call: SipCall) -> None:
        if self._calls.get(call.dialog_key) is call:
            del self._calls[call.dialog_key]

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
