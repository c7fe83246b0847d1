"""Outbound registration to a SIP trunk: REGISTER with Digest, refresh, backoff after failure.

One named task per trunk. It registers, answers a 401/407 challenge (SHA-256 or MD5,
qop=auth), follows 423 Min-Expires, then refreshes at half the granted interval. A
failure (no answer, 403, 5xx, a challenge our credentials do not satisfy) moves the
state to FAILING with the reason and retries with exponential backoff plus jitter
(RFC 5626 §4.5 style). Each state transition is logged once; ``status()`` tells an
operator (or the TUI) where the trunk stands.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import secrets
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from drivers.sip.config import SipLineConfig
from drivers.sip.digest import authorization, pick_challenge
from drivers.sip.headers import Headers
from drivers.sip.message import SipResponse, serialize_request
from drivers.sip.transport import Connection, SipTransports
from drivers.sip.uri import is_digits, parse_name_addr
from drivers.sip.useragent import UserAgent, new_branch, new_tag

log = logging.getLogger(__name__)

DNS_TIMEOUT_S = 10.0  # resolving the registrar's name; a failure is retried with the backoff
RESPONSE_WAIT_S = 40.0  # Timer F (32 s) reports a silent registrar first; this only guards against a bug
UNREGISTER_WAIT_S = 2.0  # on stop, time given to the Expires: 0 REGISTER (a LAN/WAN answer is < 1 s)
MIN_REFRESH_S = 1.0  # never re-register more often than this, whatever the server grants
MAX_AUTH_ROUNDS = 2  # one challenge, plus one stale=true re-challenge


class TrunkState(StrEnum):
    STARTING = "starting"
    REGISTERED = "registered"
    FAILING = "failing"
    STOPPED = "stopped"


_ALLOWED: dict[TrunkState, frozenset[TrunkState]] = {
    TrunkState.STARTING: frozenset({TrunkState.REGISTERED, TrunkState.FAILING, TrunkState.STOPPED}),
    TrunkState.REGISTERED: frozenset({TrunkState.REGISTERED, TrunkState.FAILING, TrunkState.STOPPED}),
    TrunkState.FAILING: frozenset({TrunkState.REGISTERED, TrunkState.FAILING, TrunkState.STOPPED}),
    TrunkState.STOPPED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    registrar_host: str
    registrar_port: int
    username: str
    password: str
    domain: str
    expires: int = 600
    retry_base_s: float = 30.0  # first retry after a failure (RFC 5626 §4.5 base time)
    retry_max_s: float = 1800.0  # backoff ceiling


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    state: TrunkState
    reason: str  # why it is failing ("" when registered)
    expires_in: float | None  # seconds left on the current registration
    failures: int  # consecutive failed attempts


class TrunkFailure(Exception):
    """One registration attempt failed; the message is the operator-facing reason."""


def backoff_delay(failures: int, base: float, ceiling: float) -> float:
    """``base * 2**(failures-1)`` capped at ``ceiling``, with 50-100 % jitter."""
    raw = min(ceiling, base * (2 ** min(failures - 1, 16)))
    return raw * random.uniform(0.5, 1.0)


class TrunkRegistration:
    def __init__(self, ua: UserAgent, conn: Connection, config: TrunkConfig,
                 contact_hostport: str | Callable[[str], str]) -> None:
        """``contact_hostport``: our "ip:port" for Via/Contact, or a function of the registrar's IP."""
        self._ua = ua
        self._conn = conn
        self.config = config
        self._contact_for = contact_hostport if callable(contact_hostport) else (lambda _ip: contact_hostport)
        self._contact_hostport = ""
        self._resolved: str | None = None
        self._call_id = f"{secrets.token_hex(10)}@branchline"
        self._from_tag = new_tag()
        self._cseq = 0
        self._nc = 0
        self._challenge: dict[str, str] | None = None
        self.state = TrunkState.STARTING
        self._reason = ""
        self._failures = 0
        self._registered_until: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.transitions: asyncio.Queue[TrunkState] = asyncio.Queue(maxsize=64)  # for observers/tests

    @property
    def aor(self) -> str:
        return f"sip:{self.config.username}@{self.config.domain}"

    def status(self) -> TrunkStatus:
        left = None
        if self._registered_until is not None:
            left = max(0.0, self._registered_until - self._ua.now())
        return TrunkStatus(self.state, self._reason, left, self._failures)

    def _go(self, new: TrunkState, reason: str = "") -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"trunk {self.aor}: {self.state} -> {new} not allowed")
        old, self.state, self._reason = self.state, new, reason
        if new is not old:
            if not self.transitions.full():
                self.transitions.put_nowait(new)
            if new is TrunkState.FAILING:
                log.warning("SIP trunk %s: registration failing: %s", self.aor, reason)
            elif new is TrunkState.REGISTERED:
                log.info("SIP trunk %s: registered at %s:%d", self.aor, self.config.registrar_host,
                         self.config.registrar_port)
            else:
                log.info("SIP trunk %s: %s", self.aor, new.value)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sip-trunk-{self.config.username}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # we are being cancelled ourselves
                    raise
            self._task = None
        if self.state is TrunkState.REGISTERED:
            try:
                async with asyncio.timeout(UNREGISTER_WAIT_S):
                    await self._register(0)
            except (TimeoutError, TrunkFailure) as exc:
                log.info("SIP trunk %s: unregister not confirmed: %s", self.aor, exc or "timeout")
        if self.state is not TrunkState.STOPPED:
            self._go(TrunkState.STOPPED)
        self._registered_until = None

    async def _run(self) -> None:
        cfg = self.config
        while True:
            try:
                granted = await self._register(cfg.expires)
            except TrunkFailure as exc:
                self._failures += 1
                self._registered_until = None
                delay = backoff_delay(self._failures, cfg.retry_base_s, cfg.retry_max_s)
                if self.state is TrunkState.FAILING:
                    log.debug("SIP trunk %s: attempt %d failed: %s; retry in %.1f s", self.aor,
                              self._failures, exc, delay)
                self._go(TrunkState.FAILING, f"{exc} (retry in {delay:.0f} s)")
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            self._registered_until = self._ua.now() + granted
            self._go(TrunkState.REGISTERED)
            await asyncio.sleep(max(MIN_REFRESH_S, granted / 2))

    # ---- one registration (with its auth round trips) ----------------------------------------
    def _request(self, expires: int) -> tuple[bytes, str]:
        cfg = self.config
        self._cseq += 1
        branch = new_branch()
        uri = f"sip:{cfg.domain}"
        items = [
            ("Via", f"SIP/2.0/UDP {self._contact_hostport};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self._from_tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self._call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", f"<sip:{cfg.username}@{self._contact_hostport}>"),
            ("Expires", str(expires)),
            ("User-Agent", self._ua.server_name),
        ]
        if self._challenge is not None:
            self._nc += 1
            header = "Proxy-Authorization" if self._challenge.get("_proxy") else "Authorization"
            items.append((header, authorization(self._challenge, "REGISTER", uri, cfg.username, cfg.password,
                                                self._nc)))
        return serialize_request("REGISTER", uri, Headers(items)), branch

    async def _resolve(self) -> None:
        """Aim the connection at the registrar's address (a name is resolved off the loop's thread)."""
        host, port = self.config.registrar_host, self.config.registrar_port
        try:
            ip = str(ipaddress.ip_address(host))
        except ValueError:
            try:
                async with asyncio.timeout(DNS_TIMEOUT_S):
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except (OSError, TimeoutError) as exc:
                raise TrunkFailure(f"cannot resolve {host}: {exc or 'timeout'}") from None
            v4 = [info for info in infos if info[0] == socket.AF_INET]  # our SIP socket is usually IPv4
            ip = (v4 or infos)[0][4][0]
        if ip != self._resolved:
            self._resolved = ip
            self._conn = self._conn.redirect((ip, port))
            self._contact_hostport = self._contact_for(ip)

    async def destination(self) -> tuple[Connection, str]:
        """Where calls through the trunk go: the connection to the (resolved) registrar and our
        "ip:port" for Via/Contact towards it. ``TrunkFailure`` when the name does not resolve."""
        await self._resolve()
        return self._conn, self._contact_hostport

    async def _transaction(self, expires: int) -> SipResponse:
        await self._resolve()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[SipResponse | None] = loop.create_future()

        def done(response: SipResponse | None) -> None:
            if not answer.done():
                answer.set_result(response)

        data, branch = self._request(expires)
        self._ua.send_request(data, branch, "REGISTER", self._conn, on_response=done)
        try:
            async with asyncio.timeout(RESPONSE_WAIT_S):
                response = await answer
        except TimeoutError:
            response = None
        if response is None:
            raise TrunkFailure(f"no answer from {self.config.registrar_host}:{self.config.registrar_port}")
        return response

    async def _register(self, expires: int) -> int:
        """Returns the granted interval in seconds; raises TrunkFailure with the reason."""
        rounds = 0
        interval_retried = False
        while True:
            response = await self._transaction(expires)
            status = response.status
            if 200 <= status < 300:
                return self._granted(response, expires)
            if status in (401, 407) and rounds < MAX_AUTH_ROUNDS:
                name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
                challenge = pick_challenge(response.headers.get_all(name))
                if challenge is None:
                    raise TrunkFailure(f"{status} with no Digest challenge we support (SHA-256/MD5)")
                stale = challenge.get("stale", "").lower() == "true"
                if rounds and not stale:
                    raise TrunkFailure(f"{status} {response.reason}: credentials refused")
                if status == 407:
                    challenge["_proxy"] = "1"
                self._challenge, self._nc = challenge, 0
                rounds += 1
                continue
            if status == 423 and not interval_retried:
                min_expires = (response.headers.get("Min-Expires") or "").strip()
                if is_digits(min_expires) and int(min_expires) > expires:
                    expires, interval_retried = int(min_expires), True
                    continue
            raise TrunkFailure(f"{status} {response.reason}")

    def _granted(self, response: SipResponse, asked: int) -> int:
        ours = f"{self.config.username}@{self._contact_hostport}"
        for value in response.headers.get_all("Contact"):
            try:
                addr = parse_name_addr(value)
            except ValueError:
                continue
            expires = dict(addr.params).get("expires")
            if str(addr.uri).removeprefix("sip:").split(";")[0] == ours and expires and is_digits(expires):
                return int(expires)
        header = (response.headers.get("Expires") or "").strip()
        return int(header) if is_digits(header) else asked


def trunk_for_line(cfg: SipLineConfig, ua: UserAgent, transports: SipTransports,
                   local_ip_for: Callable[[str], str]) -> TrunkRegistration:
    """The registration to ``cfg.trunk_registrar`` ("host:port", port 5060 if left out) from the line's
    UDP socket; ``local_ip_for(registrar_ip)``: our address towards it (unless ``advertised_ip`` says)."""
    host, _, port_text = cfg.trunk_registrar.rpartition(":")
    if not host or not is_digits(port_text):
        host, port_text = cfg.trunk_registrar, "5060"
    conn = transports.udp_connection((host, int(port_text)))  # re-aimed at the resolved address
    assert conn is not None
    udp_port = transports.udp_port

    def contact_hostport(registrar_ip: str) -> str:
        local_ip = cfg.advertised_ip or local_ip_for(registrar_ip)
        return f"[{local_ip}]:{udp_port}" if ":" in local_ip else f"{local_ip}:{udp_port}"

    trunk = TrunkConfig(host, int(port_text), cfg.trunk_username, cfg.trunk_password,
                        cfg.trunk_domain or host, cfg.trunk_expires)
    return TrunkRegistration(ua, conn, trunk, contact_hostport)
