"""Outbound trunk registration: SIPp as the provider's registrar, and a raw-socket registrar for failures."""
from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from drivers.sip.digest import DigestServer, Verdict
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, parse_message, response_bytes
from drivers.sip.transport import SipTransports
from drivers.sip.trunk import TrunkConfig, TrunkRegistration, TrunkState, backoff_delay
from drivers.sip.useragent import UserAgent
from tests.drivers.sip.test_sipp import SCENARIO_DIR, _free_port

WAIT_S = 5.0


async def _next_state(trunk: TrunkRegistration, timeout: float = WAIT_S) -> TrunkState:
    async with asyncio.timeout(timeout):
        return await trunk.transitions.get()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    for failures, low, high in [(1, 15, 30), (2, 30, 60), (3, 60, 120), (10, 900, 1800), (60, 900, 1800)]:
        for _ in range(20):
            assert low <= backoff_delay(failures, 30.0, 1800.0) <= high


@pytest.mark.sipp
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
async def test_trunk_registers_against_sipp_after_401_and_refreshes(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="drivers.sip.trunk")
    sipp_port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIO_DIR / "uas_register_challenge.xml"), "-i", "127.0.0.1", "-p", str(sipp_port),
        "-m", "1", "-nostdin", "-trace_err", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False,
                                 trunk_registrar=f"127.0.0.1:{sipp_port}", trunk_username="trunkuser",
                                 trunk_password="trunk-pass-1", trunk_domain="trunk.test"), _no_calls)
    try:
        await line.start()
        trunk = line.trunk
        assert await _next_state(trunk) is TrunkState.REGISTERED
        status = line.trunk_status()
        assert status.state is TrunkState.REGISTERED and status.reason == "" and 3.0 < status.expires_in <= 4.0
        async with asyncio.timeout(10.0):  # SIPp exits once the refresh (due at ~2 s) was accepted
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode(errors="replace")
        assert line.trunk_status().state is TrunkState.REGISTERED
        assert line.trunk_status().expires_in > 3.0  # renewed by the refresh, not left to run out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await line.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("SIP trunk sip:trunkuser@trunk.test: registered at 127.0.0.1:%d" % sipp_port) == 1


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


class FakeRegistrar(asyncio.DatagramProtocol):
    """Answers REGISTERs with a scripted list of statuses; 401s carry a real MD5/SHA-256 challenge."""

    def __init__(self, script: list[int], password: str = "pw") -> None:
        self.script = script
        self.auth = DigestServer("fake", {"user": password}, ("SHA-256", "MD5"))
        self.requests: list[SipRequest] = []
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        request = parse_message(data)
        self.requests.append(request)
        status = self.script.pop(0) if self.script else 200
        extra: tuple = ()
        now = asyncio.get_running_loop().time()
        if status == 401:
            extra = tuple(("WWW-Authenticate", v) for v in self.auth.challenges(now))
        elif status == 200:
            verdict = self.auth.check(request.headers.get("Authorization"), "REGISTER", now).verdict
            if verdict is not Verdict.OK:
                status = 403
            else:
                extra = (("Contact", f"{request.headers.get('Contact')};expires=60"),)
        self.transport.sendto(response_bytes(request, status, to_tag="reg", extra=extra), addr)


class _Tu:
    def on_invite(self, request, txn) -> None: ...
    def on_in_dialog(self, request, txn) -> None: ...
    def on_ack(self, request) -> None: ...
    def on_cancel(self, txn) -> None: ...


@pytest.fixture
async def trunk_against():
    made: list = []

    async def factory(script: list[int], password: str = "pw",
                      host: str = "127.0.0.1") -> tuple[TrunkRegistration, FakeRegistrar]:
        loop = asyncio.get_running_loop()
        transport, registrar = await loop.create_datagram_endpoint(lambda: FakeRegistrar(script),
                                                                   local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        ua = UserAgent(_Tu())
        sockets = SipTransports("127.0.0.1", 0, ua.on_message, tcp=False)
        await sockets.start()
        cfg = TrunkConfig(host, port, "user", password, "fake.test", expires=60,
                          retry_base_s=0.05, retry_max_s=0.2)
        trunk = TrunkRegistration(ua, sockets.udp_connection((host, port)), cfg,
                                  lambda registrar_ip: f"{registrar_ip}:{sockets.udp_port}")
        made.append((trunk, sockets, ua, transport))
        return trunk, registrar

    yield factory
    for trunk, sockets, ua, transport in made:
        await trunk.stop()
        ua.close()
        await sockets.close()
        transport.close()


async def test_failures_back_off_then_recover_with_transitions_logged_once(trunk_against, caplog) -> None:
    caplog.set_level(logging.INFO, logger="drivers.sip.trunk")
    trunk, registrar = await trunk_against([503, 503, 503, 401, 200])
    trunk.start()
    assert await _next_state(trunk) is TrunkState.FAILING
    status = trunk.status()
    assert status.state is TrunkState.FAILING and status.reason.startswith("503 Service Unavailable")
    assert await _next_state(trunk) is TrunkState.REGISTERED
    assert trunk.status().failures == 0 and trunk.status().reason == ""
    assert len(registrar.requests) == 5  # 3 failed attempts, then challenge + authenticated REGISTER
    assert registrar.requests[-1].headers.get("Authorization").count("algorithm=SHA-256") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["SIP trunk sip:user@fake.test: registration failing: 503 Service Unavailable"
                        + warnings[0].split("Unavailable", 1)[1]]  # one line for three failures
    cseqs = [r.cseq.number for r in registrar.requests]
    assert cseqs == sorted(cseqs) and len(set(r.call_id for r in registrar.requests)) == 1


async def test_wrong_credentials_fail_with_reason(trunk_against) -> None:
    trunk, registrar = await trunk_against([401, 401, 401, 401], password="wrong")
    trunk.start()
    assert await _next_state(trunk) is TrunkState.FAILING
    assert trunk.status().reason.startswith("401 Unauthorized: credentials refused")
    assert [r.headers.get("Authorization") is None for r in registrar.requests[:2]] == [True, False]
    await trunk.stop()
    assert trunk.status().state is TrunkState.STOPPED


async def test_stop_unregisters(trunk_against) -> None:
    trunk, registrar = await trunk_against([401, 200])
    trunk.start()
    assert await _next_state(trunk) is TrunkState.REGISTERED
    await trunk.stop()
    assert registrar.requests[-1].headers.get("Expires") == "0"
    assert trunk.status().state is TrunkState.STOPPED


async def test_registrar_given_by_name_is_resolved(trunk_against) -> None:
    trunk, registrar = await trunk_against([401, 200], host="localhost")
    trunk.start()
    assert await _next_state(trunk) is TrunkState.REGISTERED
    assert registrar.requests[0].headers.get("Contact").startswith("<sip:user@127.0.0.1:")


async def test_unresolvable_registrar_is_a_failure_with_reason(trunk_against) -> None:
    trunk, registrar = await trunk_against([], host="no-such-host.invalid")
    trunk.start()
    assert await _next_state(trunk, timeout=15.0) is TrunkState.FAILING
    assert trunk.status().reason.startswith("cannot resolve no-such-host.invalid")
    assert registrar.requests == []
