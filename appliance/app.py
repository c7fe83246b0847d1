"""The composition root: staged start-up, the running box, and staged shutdown."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from appliance.acd.router import Acd
from appliance.agent_devices import AgentDevices
from appliance.calls import CallCenter
from appliance.dialplan import DialPlan
from appliance.lines import CallerId, Dialler, DialFailed, DialFailure, OutboundCall
from appliance.outbound import OutboundCalls
from appliance.config import AgentConfig, BoxConfig
from appliance.hub import Hub, Overflow
from appliance.line_manager import LineManager
from appliance.messaging import MessageCenter
from appliance.simulation import SimulationControl
from appliance.storage import RetentionPolicy, Store
from appliance.web.server import ConsoleDeps, build_app
from appliance.web.sessions import Sessions

log = logging.getLogger(__name__)

# Shutdown budget per stage (seconds). The sum plus a margin must stay under systemd's
# TimeoutStopSec (90 s by default); tests/appliance/test_shutdown_budget.py checks it.
SHUTDOWN_STAGES_S = {"calls": 15.0, "lines": 10.0, "web": 5.0, "api": 3.0, "storage": 10.0}
SYSTEMD_TIMEOUT_STOP_S = 90.0
WEB_SHUTDOWN_TIMEOUT_S = 3.0


class ListenError(OSError):
    """A listening socket of the box could not be bound; ``hint`` tells the operator what to change."""

    def __init__(self, what: str, host: str, port: int, reason: str, hint: str) -> None:
        super().__init__(f"{what} cannot listen on {host or '*'}:{port}: {reason}")
        self.hint = hint


def listen_error(exc: OSError, what: str, host: str, port: int, section: str, port_key: str = "port",
                 option: str = "") -> ListenError:
    """``exc`` from a bind as an operator message naming the option and config key that choose the port."""
    change = (f"{option} or " if option else "") + f"{section} {port_key} in the config file"
    # uvloop's UDP bind raises a bare OSError("could not bind to local_addr ...") with the errno on its cause
    code = exc.errno or getattr(exc.__cause__, "errno", None)
    if code == errno.EADDRINUSE:
        return ListenError(what, host, port, "address already in use",
                           f"another program (or another Branchline box) holds port {port}: stop it, "
                           f"or pick another port with {change}")
    if code == errno.EACCES:
        return ListenError(what, host, port, "permission denied",
                           f"ports below 1024 need root or CAP_NET_BIND_SERVICE: pick a port above 1023 with {change}")
    if code == errno.EADDRNOTAVAIL:
        return ListenError(what, host, port, f"{host} is not an address of this machine",
                           f"set {section} bind to one of its addresses, or 0.0.0.0 for all of them")
    return ListenError(what, host, port, str(exc.__cause__ or exc), f"check the port, or pick another with {change}")


@dataclass(frozen=True, slots=True)
class Endpoints:
    web_url: str
    sip_udp: int | None
    sip_tcp: int | None
    sip_tls: int | None = None


class Box:
    """Everything that runs; built by ``start`` and torn down by ``stop``."""

    def __init__(self, cfg: BoxConfig) -> None:
        self.cfg = cfg
        self.hub = Hub()
        self.hub.topic("acd", maxsize=512)
        self.hub.topic("calls", maxsize=512)
        self.hub.topic("lines", maxsize=256, overflow=Overflow.DROP_OLDEST)
        self.hub.topic("messages", maxsize=512)
        self._agents: dict[str, AgentConfig] = {a.id: a for a in cfg.agents}
        self.store: Store | None = None
        self.acd: Acd | None = None
        self.calls: CallCenter | None = None
        self.outbound: OutboundCalls | None = None
        self.devices: AgentDevices | None = None
        self.desk_consult: Any = None  # appliance.desk_consult.DeskConsult once started
        self.dial_plan: DialPlan | None = None  # the outbound dial plan (the admin API shows and tests it)
        self.messages: MessageCenter | None = None
        self.lines: LineManager | None = None
        self.simulation: SimulationControl | None = None
        self.sessions = Sessions()
        self._runner: web.AppRunner | None = None
        self._lines: list[Any] = []
        self._stop_hooks: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.endpoints: Endpoints | None = None
        self.started_at = time.time()

    @property
    def sip_lines(self) -> list[Any]:
        """The running SIP line drivers (the modem lines are in ``self.lines``)."""
        return list(self._lines)

    # --- agents (config) --------------------------------------------------------------------
    def agent_config(self, agent_id: str) -> AgentConfig | None:
        return self._agents.get(agent_id)

    def agent_name(self, agent_id: str) -> str:
        a = self._agents.get(agent_id)
        return a.name if a else agent_id

    def put_agent(self, agent: AgentConfig) -> None:
        """Add or change an agent live (the TUI uses this); the ACD follows at once."""
        self._agents[agent.id] = agent
        assert self.acd is not None
        self.acd.add_agent(agent.id, agent.name, agent.queues)

    def remove_agent(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)
        if self.acd is not None:
            self.acd.remove_agent(agent_id)

    async def revoke_console(self, agent_id: str, why: str) -> None:
        """A changed password or a removed agent ends that agent's console log-in at once."""
        if self.sessions is not None:
            await self.sessions.revoke(agent_id, why)

    async def conversations(self, limit: int = 30) -> list[dict[str, Any]]:
        """Recent SMS conversations with their messages, newest first, for the console inbox."""
        assert self.store is not None
        out = []
        for conv in await self.store.recent_conversations(limit):
            msgs = await self.store.messages(conv)
            out.append({
                "conversation_id": conv.conversation_id, "number": conv.number, "customer_id": conv.customer_id,
                "state": str(conv.state), "last_at": conv.last_at,
                "messages": [{"key": m.key, "direction": m.direction, "body": m.body, "at": m.at} for m in msgs],
            })
        return out

    # --- calls: agents' devices, outbound lines ----------------------------------------------------
    def _phone_line(self) -> Any:
        return self._lines[0] if self._lines else None

    def _extension_of(self, agent_id: str) -> str:
        agent = self._agents.get(agent_id)
        return agent.phone if agent is not None else ""

    def _agent_hangup(self, agent_id: str) -> bool:
        """The agent ends its call (console button or desk phone on hook), inbound or outbound."""
        return bool((self.outbound and self.outbound.agent_hangup(agent_id))
                    or (self.calls and self.calls.agent_hangup(agent_id)))

    def _agent_hold(self, agent_id: str, on: bool) -> bool:
        """The agent pressed Hold/Resume on the console, for an inbound or an outbound call."""
        return bool((self.outbound and self.outbound.agent_hold(agent_id, on))
                    or (self.calls and self.calls.agent_hold(agent_id, on)))

    async def _agent_keys(self, agent_id: str, digits: str) -> bool:
        """The agent pressed keys on the console's keypad: DTMF to the customer's line."""
        if self.outbound is not None and await self.outbound.agent_keys(agent_id, digits):
            return True
        return self.calls is not None and await self.calls.agent_keys(agent_id, digits)

    def _phone_transfer(self, agent_id: str, user: str) -> bool:
        """The agent pressed Transfer on the desk phone (REFER to ``user``): a blind transfer."""
        from appliance.transfer_requests import TransferError, target_for_user

        target = target_for_user(user, {a.id: a.phone for a in self._agents.values()}, {q.id for q in self.cfg.queues})
        if target is None or self.calls is None:
            log.info("agent %s: desk phone transfer to %r refused: not an agent, queue or number", agent_id, user)
            return False
        try:
            self.calls.transfer(agent_id, None, target)
        except TransferError as exc:
            log.info("agent %s: desk phone transfer to %r refused: %s", agent_id, user, exc)
            return False
        log.info("agent %s transferred the call from the desk phone to %s", agent_id, user)
        return True

    def live_calls(self) -> list[Any]:
        return (self.calls.live_calls() if self.calls else []) + (self.outbound.live_calls() if self.outbound else [])

    def diallers(self) -> dict[str, Dialler]:
        """Every line that can place calls now or later, by line id (``trunk`` for the SIP trunk)."""
        found: dict[str, Dialler] = {}
        sip = self._phone_line()
        if sip is not None and sip.trunk is not None:
            found["trunk"] = _TrunkDialler(sip)
        if self.lines is not None and hasattr(self.lines, "diallers"):
            found.update(self.lines.diallers())
        return found

    # --- start ----------------------------------------------------------------------------------
    async def start(self) -> Endpoints:
        cfg = self.cfg
        st = cfg.storage
        retention = RetentionPolicy(
            records_days=st.records_days or None,
            recordings_days=st.recordings_days or None,
            interval_s=st.retention_interval_h * 3600.0,
        )
        self.store = await Store.open(cfg.data_dir, branch=cfg.branch, retention=retention,
                                      encryption_key=st.key_bytes(), min_free_bytes=st.min_free_mb * 2**20)
        self._stop_hooks.append(("storage", self.store.close))
        retention_task = asyncio.create_task(self.store.retention_task(), name="storage-retention")

        async def stop_retention() -> None:
            retention_task.cancel()
            await asyncio.wait({retention_task})

        self._stop_hooks.append(("storage", stop_retention))
        for alarm in self.store.alarms():
            log.warning("storage alarm: %s", getattr(alarm, "message", alarm))

        acd_topic = self.hub.topic("acd")
        self.acd = Acd(
            agents=[(a.id, a.name, a.queues) for a in cfg.agents],
            queues=[q.id for q in cfg.queues],
            ring_timeout_s=cfg.acd.ring_timeout_s,
            wrapup_s=cfg.acd.wrapup_s,
            pause_on_missed_offer=cfg.acd.pause_on_missed_offer,
            publish=acd_topic.publish,
        )
        self.devices = AgentDevices(self.acd, acd_topic, self.sessions, self._phone_line, self._extension_of)
        self.devices.start()
        self._stop_hooks.append(("lines", self.devices.stop))
        dial_plan = self.dial_plan = DialPlan(cfg.dial_plan, self.diallers)
        self.calls = CallCenter(cfg, self.acd, self.store, self.hub.topic("calls"), self.devices, self.agent_name,
                                dial_external=dial_plan.dial)
        await self.calls.prepare()
        self.outbound = OutboundCalls(acd=self.acd, store=self.store, calls_topic=self.hub.topic("calls"),
                                      dial_plan=dial_plan, agent_audio=self.devices,
                                      agent_name=self.agent_name, recording=cfg.recording.enabled, country=cfg.country)
        self.devices.on_phone_hangup = self._agent_hangup
        self.devices.on_phone_transfer = self._phone_transfer
        self.devices.on_phone_hold = self._agent_hold
        from appliance.desk_consult import DeskConsult

        # in front of the queue: a desk phone's own consult call (attended transfer from the phone)
        self.desk_consult = DeskConsult(self.calls, self.devices, self.acd, acd_topic, self._phone_line,
                                        lambda: {a.id: a.phone for a in self._agents.values()}, cfg.country)
        self.devices.on_phone_replaces = self.desk_consult.complete_from_phone
        self.messages = MessageCenter(self.store, self.hub.topic("messages"), region=cfg.country)

        web_url = await self._start_web()
        sip_udp, sip_tcp, sip_tls = await self._start_sip()
        self.lines = LineManager(cfg, self.hub.topic("lines"), self.calls.handle_inbound, self.messages)
        await self.lines.start()
        self.simulation = SimulationControl(self.lines.simulators) if self.lines.simulators else None
        if self.simulation is not None:
            self._stop_hooks.append(("lines", self.simulation.close))
        from appliance.api.server import start_local_api

        self._stop_hooks.append(("api", await start_local_api(self)))
        self.endpoints = Endpoints(web_url, sip_udp, sip_tcp, sip_tls)
        self._write_endpoints()
        return self.endpoints

    def run_dir(self) -> Path:
        """Where the running box publishes its endpoints and local API socket."""
        return self.cfg.data_dir / "run"

    def _write_endpoints(self) -> None:
        assert self.endpoints is not None
        run_dir = self.run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        doc = {"pid": os.getpid(), "web_url": self.endpoints.web_url, "sip_udp": self.endpoints.sip_udp,
               "sip_tcp": self.endpoints.sip_tcp, "sip_tls": self.endpoints.sip_tls, "started_at": self.started_at}
        tmp = run_dir / "endpoints.json.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, run_dir / "endpoints.json")

    async def _start_web(self) -> str:
        cfg = self.cfg
        if cfg.web.ice_host_addresses:
            from media.webrtc import use_host_addresses

            use_host_addresses(cfg.web.ice_host_addresses)
            log.info("WebRTC candidates pinned to %s", ", ".join(cfg.web.ice_host_addresses))
        assert self.acd is not None and self.calls is not None
        deps = ConsoleDeps(
            acd=self.acd,
            hub=self.hub,
            sessions=self.sessions,
            agent_config=self.agent_config,
            queues=lambda: self.cfg.queues,
            hangup=self._agent_hangup,
            live_calls=self.live_calls,
            messages=self.messages,
            conversations=self.conversations,
            devices=self.devices,
            dial=self.outbound.dial if self.outbound is not None else None,
            transfers=self.calls,
            hold=self._agent_hold,
            keys=self._agent_keys,
        )
        self._runner = web.AppRunner(build_app(deps), shutdown_timeout=WEB_SHUTDOWN_TIMEOUT_S, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.web.bind, cfg.web.port)
        try:
            await site.start()
        except OSError as exc:
            raise listen_error(exc, "agent console", cfg.web.bind, cfg.web.port, "[web]", option="--web-port") from exc
        port = self._runner.addresses[0][1]
        host = "127.0.0.1" if cfg.web.bind in ("0.0.0.0", "::", "") else cfg.web.bind
        return f"http://{host}:{port}/"

    async def _start_sip(self) -> tuple[int | None, int | None, int | None]:
        from drivers.sip.line import SipLine, SipLineConfig

        cfg = self.cfg
        assert self.calls is not None
        line = SipLine(
            SipLineConfig(
                host=cfg.sip.bind,
                port=cfg.sip.port,
                advertised_ip=cfg.sip.sdp_address or None,
                rtp_port_range=(cfg.sip.rtp_port_min, cfg.sip.rtp_port_max),
                tcp="tcp" in cfg.sip.transports,
                tls="tls" in cfg.sip.transports,
                tls_port=cfg.sip.tls_port,
                tls_cert=cfg.sip.tls_cert,
                tls_key=cfg.sip.tls_key,
                tls_dir=str(cfg.data_dir / "tls"),
                numbers=cfg.sip.numbers,
                users=tuple((str(e), str(p)) for e, p in cfg.sip.users),
                realm=cfg.sip.realm,
                auth_algorithms=cfg.sip.auth_algorithms,
                register_min_expires=cfg.sip.register_min_expires,
                register_max_expires=cfg.sip.register_max_expires,
                qualify_s=cfg.sip.qualify_s,
                bindings_file=str(self.run_dir() / "sip-bindings.json"),
                guard=cfg.sip.guard,
                rate_limit_per_s=cfg.sip.rate_limit_per_s,
                rate_limit_burst=cfg.sip.rate_limit_burst,
                ban_after_failures=cfg.sip.ban_after_failures,
                ban_window_s=cfg.sip.ban_window_s,
                ban_s=cfg.sip.ban_s,
                trusted_networks=cfg.sip.trusted_networks,
                trunk_registrar=cfg.sip.trunk_registrar,
                trunk_username=cfg.sip.trunk_username,
                trunk_password=cfg.sip.trunk_password,
                trunk_domain=cfg.sip.trunk_domain,
                trunk_expires=cfg.sip.trunk_expires,
                trunk_register=cfg.sip.trunk_register,
                trunk_caller_id=cfg.sip.trunk_caller_id,
                trunk_caller_name=cfg.sip.trunk_caller_name,
                trunk_presentation=cfg.sip.trunk_presentation,
            ),
            self.desk_consult.handle_inbound if self.desk_consult is not None else self.calls.handle_inbound,
        )
        try:
            await line.start()
        except OSError as exc:
            await self._stage("lines", line.stop())  # release UDP/TCP when a later transport failed
            if exc.filename is not None:  # a file (the TLS folder), not a socket: the message says which
                raise
            if not line.udp_port:
                raise listen_error(exc, "SIP over UDP", cfg.sip.bind, cfg.sip.port, "[sip]", option="--sip-port") from exc
            if "tcp" in cfg.sip.transports and not line.tcp_port:
                raise listen_error(exc, "SIP over TCP", cfg.sip.bind, cfg.sip.port or line.udp_port, "[sip]",
                                   option="--sip-port") from exc
            raise listen_error(exc, "SIP over TLS", cfg.sip.bind, cfg.sip.tls_port, "[sip]", "tls_port") from exc
        except Exception as exc:
            from drivers.sip.tls import TlsSetupError

            if isinstance(exc, TlsSetupError):
                raise OSError(f"SIP over TLS cannot start: {exc}") from None
            raise
        self._lines.append(line)
        if line.tls_port:
            log.info("SIP over TLS on port %d", line.tls_port)
        return line.udp_port or None, line.tcp_port or None, line.tls_port or None

    # --- stop -----------------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Staged shutdown: calls, lines, web, storage. Each stage is bounded and logged."""
        if self.calls is not None:
            await self._stage("calls", self._stop_calls(SHUTDOWN_STAGES_S["calls"] - 1.0))
        if self.lines is not None:
            await self._stage("lines", self.lines.stop())
        for line in reversed(self._lines):
            await self._stage("lines", line.stop())
        await self.sessions.close_all()
        if self._runner is not None:
            await self._stage("web", self._runner.cleanup())
        if self.acd is not None:
            self.acd.close()
        for name, hook in reversed(self._stop_hooks):
            await self._stage(name, hook())
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir() / "endpoints.json").unlink()

    async def _stop_calls(self, timeout: float) -> None:
        assert self.calls is not None
        jobs = [self.calls.shutdown(timeout)] + ([self.outbound.shutdown(timeout)] if self.outbound else [])
        await asyncio.gather(*jobs)

    async def _stage(self, name: str, aw: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(SHUTDOWN_STAGES_S[name]):
                await aw
        except TimeoutError:
            log.warning("shutdown stage %s did not finish within %.0fs; carrying on", name, SHUTDOWN_STAGES_S[name])
        except Exception as exc:
            log.warning("shutdown stage %s failed (%s); carrying on", name, exc)


async def run_box(cfg: BoxConfig, stop: asyncio.Event, on_ready: Callable[[Box], None] | None = None) -> None:
    box = Box(cfg)
    try:
        await box.start()
        if on_ready is not None:
            on_ready(box)
        await stop.wait()
        log.info("shutting down")
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await box.stop()
    log.info("stopped cleanly")


class _TrunkDialler:
    """The SIP trunk as a ``Dialler`` for the dial plan."""

    line_id = "trunk"

    def __init__(self, sip_line: Any) -> None:
        self._sip = sip_line

    async def dial(self, number: str, caller: CallerId | None = None) -> OutboundCall:
        if not hasattr(self._sip, "dial_trunk"):
            raise DialFailed(DialFailure.LINE_DOWN, "this SIP line cannot place trunk calls")
        return await self._sip.dial_trunk(number, caller)
