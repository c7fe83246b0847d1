"""Qualify: a running SipLine sends OPTIONS to registered UDP phones, driven by raw sockets on 127.0.0.1.

Intervals are shortened through ``qualify_s`` and the silent-phone wait through
``drivers.sip.qualify.QUALIFY_TIMEOUT_S``; every wait has a timeout. The tests synchronise
on what the line sends (the next OPTIONS is only scheduled once the previous one was
answered or given up) and on a round trip of our own OPTIONS (the line handles a socket's
datagrams in order, so once it answered ours it has handled the response we sent before).
"""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from appliance.lines import DialFailed, DialFailure
from drivers.sip import qualify
from drivers.sip.digest import authorization, pick_challenge
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, SipResponse, response_bytes
from tests.drivers.sip.outgoing_peer import EXT_PASSWORD, TcpPhone
from tests.drivers.sip.outgoing_peer import register as register_over
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id
from tests.drivers.sip.test_line_security import USERS, register

WAIT_S = 3.0
SILENCE_S = 0.3  # QUALIFY_TIMEOUT_S in these tests


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


@pytest.fixture
async def qualified(monkeypatch):
    """factory(**config) -> (line, phone): a started line and a UDP phone socket aimed at it."""
    monkeypatch.setattr(qualify, "QUALIFY_TIMEOUT_S", SILENCE_S)
    lines: list[SipLine] = []
    peers: list[SipPeer] = []

    async def factory(**overrides):
        cfg = {"host": "127.0.0.1", "port": 0, "rtp_port_range": None, "users": USERS, "qualify_s": 0.5}
        cfg.update(overrides)
        line = SipLine(SipLineConfig(**cfg), _no_calls)
        await line.start()
        lines.append(line)
        peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
        peers.append(peer)
        return line, peer

    yield factory
    for peer in peers:
        peer.close()
    for line in lines:
        await line.stop()


async def next_response(peer: SipPeer) -> SipResponse:
    """The next response, passing over OPTIONS the line sends meanwhile (left unanswered)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await peer.recv()
            if isinstance(msg, SipResponse):
                return msg


async def sign_in(peer: SipPeer, *, expires: int = 300, user: str = "201") -> SipResponse:
    password = dict(USERS)[user]
    call_id = new_call_id()
    peer.send(register(peer, user, call_id=call_id, cseq=1, expires=expires))
    challenge = await next_response(peer)
    assert challenge.status == 401
    host, port = peer.target
    auth = authorization(pick_challenge(challenge.headers.get_all("WWW-Authenticate")), "REGISTER",
                         f"sip:{host}:{port}", user, password, 1)
    peer.send(register(peer, user, call_id=call_id, cseq=2, auth=auth, expires=expires))
    ok = await next_response(peer)
    assert ok.status == 200, ok
    return ok


async def next_options(peer: SipPeer) -> SipRequest:
    msg = await peer.recv(WAIT_S)
    assert isinstance(msg, SipRequest) and msg.method == "OPTIONS", msg
    return msg


def answer(peer: SipPeer, request: SipRequest, status: int = 200) -> None:
    peer.send(response_bytes(request, status, to_tag="ph1"))


async def barrier(peer: SipPeer) -> None:
    """Round trip of our own OPTIONS: everything we sent before it has been handled by the line."""
    call_id = new_call_id()
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=call_id))
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await peer.recv()
            if isinstance(msg, SipResponse) and msg.call_id == call_id:
                return
            assert isinstance(msg, SipRequest) and msg.method == "OPTIONS", msg


def logged(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "drivers.sip.qualify" and text in r.getMessage()]


@pytest.mark.parametrize("status", [200, 404, 405, 503])
async def test_registered_phone_gets_options_at_the_interval_and_any_answer_means_reachable(qualified, caplog,
                                                                                            status) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.sip.qualify")
    line, phone = await qualified(qualify_s=0.3)
    loop = asyncio.get_running_loop()
    await sign_in(phone)
    registered_at = loop.time()
    assert line.reachable("201") is None  # not asked yet
    first = await next_options(phone)
    first_at = loop.time()
    assert first_at - registered_at >= 0.25  # one interval after the REGISTER, not at once
    assert phone.last_sender == ("127.0.0.1", line.udp_port)  # from our SIP socket to where the REGISTER came from
    assert str(first.uri) == f"sip:201@127.0.0.1:{phone.port}"  # Request-URI: the registered Contact
    assert first.via.transport == "UDP" and f"127.0.0.1:{line.udp_port}" in first.headers.get("Via")
    assert first.branch.startswith("z9hG4bK") and first.headers.get("Max-Forwards") == "70"
    assert first.from_addr.tag and first.to_addr.tag is None and str(first.to_addr.uri) == str(first.uri)
    assert first.cseq.number == 1 and first.cseq.method == "OPTIONS"
    answer(phone, first, status)
    await barrier(phone)
    assert line.reachable("201") is True
    [binding] = line.bindings("201")
    state = line.reachability(binding)
    assert state.reachable is True and 0 <= state.rtt_ms < 1000 and state.reason == ""
    second = await next_options(phone)
    assert loop.time() - first_at >= 0.25
    assert second.call_id == first.call_id and second.cseq.number == 2 and second.branch != first.branch
    answer(phone, second, status)
    await barrier(phone)
    assert line.reachable("201") is True
    assert logged(caplog, "unreachable") == [] and logged(caplog, "reachable again") == []


async def test_silent_phone_is_unreachable_after_the_bounded_wait_then_reachable_again(qualified, caplog) -> None:
    caplog.set_level(logging.INFO, logger="drivers.sip.qualify")
    line, phone = await qualified(qualify_s=0.5)
    await sign_in(phone)
    answer(phone, await next_options(phone))
    await barrier(phone)
    assert line.reachable("201") is True

    unanswered = await next_options(phone)  # the phone goes silent
    silent_from = time.time()
    following = await next_options(phone)  # sent only once the previous one was given up
    assert following.branch != unanswered.branch and following.cseq.number == unanswered.cseq.number + 1
    assert line.reachable("201") is False
    [binding] = line.bindings("201")  # still registered, just not answering
    assert line.reachability(binding).reason == "no answer to OPTIONS for 0.3 s"
    [record] = [r for r in caplog.records if r.name == "drivers.sip.qualify"]
    assert record.levelno == logging.WARNING and record.getMessage() == (
        f"SIP extension 201 (contact sip:201@127.0.0.1:{phone.port} via 127.0.0.1:{phone.port}) "
        "is unreachable: no answer to OPTIONS for 0.3 s")
    assert SILENCE_S - 0.05 <= record.created - silent_from <= SILENCE_S + 0.5
    with pytest.raises(DialFailed) as failed:  # no INVITE to a dead phone
        await line.dial_extension("201")
    assert failed.value.reason is DialFailure.LINE_DOWN
    assert failed.value.detail == "extension 201 is not reachable: no answer to OPTIONS for 0.3 s"

    await next_options(phone)  # still silent: no second log line
    assert len(logged(caplog, "is unreachable")) == 1

    answer(phone, await next_options(phone))  # back
    await barrier(phone)
    assert line.reachable("201") is True
    [back] = logged(caplog, "reachable again")
    assert back.startswith(f"SIP extension 201 (contact sip:201@127.0.0.1:{phone.port} via ") and back.endswith(" ms")
    answer(phone, await next_options(phone))
    await barrier(phone)
    assert len(logged(caplog, "reachable again")) == 1 and len(logged(caplog, "is unreachable")) == 1


async def test_given_up_options_is_not_resent_and_a_new_register_is_checked_at_once(qualified) -> None:
    line, phone = await qualified(qualify_s=1.5)
    loop = asyncio.get_running_loop()
    await sign_in(phone)
    await next_options(phone)  # unanswered
    with pytest.raises(TimeoutError):  # given up after 0.3 s: no Timer E resend at 0.5 s, 1.5 s, ...
        await phone.recv(timeout=0.8)
    assert line.reachable("201") is False
    await sign_in(phone)  # the phone speaks again (a re-REGISTER after its network came back)
    asked_at = loop.time()
    answer(phone, await next_options(phone))
    assert loop.time() - asked_at < 0.4  # at once, not at the next interval (0.7 s from now)
    await barrier(phone)
    assert line.reachable("201") is True


async def test_unregister_stops_the_pings(qualified) -> None:
    line, phone = await qualified(qualify_s=0.3)
    await sign_in(phone)
    answer(phone, await next_options(phone))
    await sign_in(phone, expires=0)
    assert line.bindings("201") == () and line.reachable("201") is None
    with pytest.raises(TimeoutError):  # three intervals and more: nothing
        await phone.recv(timeout=1.0)


async def test_expired_binding_is_no_longer_pinged(qualified) -> None:
    line, phone = await qualified(qualify_s=0.3, register_min_expires=1)
    loop = asyncio.get_running_loop()
    await sign_in(phone, expires=1)
    expires_at = loop.time() + 1.0
    arrivals: list[float] = []
    async with asyncio.timeout(5.0):
        while True:
            try:
                request = await phone.recv(timeout=1.0)  # OPTIONS every 0.3 s while registered
            except TimeoutError:
                break
            assert isinstance(request, SipRequest) and request.method == "OPTIONS", request
            arrivals.append(loop.time())
            answer(phone, request)
    assert 2 <= len(arrivals) <= 4 and arrivals[-1] < expires_at + 0.05
    assert line.bindings("201") == ()


async def test_qualify_off_sends_nothing(qualified) -> None:
    line, phone = await qualified(qualify_s=0)
    await sign_in(phone)
    with pytest.raises(TimeoutError):
        await phone.recv(timeout=0.6)
    [binding] = line.bindings("201")
    assert line.reachable("201") is None and line.reachability(binding).reachable is None


async def test_stop_does_not_wait_for_an_unanswered_options(monkeypatch, caplog) -> None:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=USERS, qualify_s=0.2),
                   _no_calls)
    await line.start()
    phone = await SipPeer(("127.0.0.1", line.udp_port)).open()
    try:
        await sign_in(phone)
        await next_options(phone)  # left unanswered: in flight for QUALIFY_TIMEOUT_S (5 s)
    finally:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await line.stop()
        phone.close()
    assert loop.time() - started < 1.0
    assert not [r for r in caplog.records if "unanswered" in r.getMessage()]


async def test_tcp_phone_gets_no_options_and_is_unreachable_once_its_connection_closes() -> None:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=(("201", EXT_PASSWORD),),
                                 auth_algorithms=("MD5",), qualify_s=0.2), _no_calls)
    await line.start()
    phone = await TcpPhone().open(line.tcp_port)
    try:
        await register_over(phone.send, phone.recv, line.tcp_port, phone.port, transport="TCP")
        assert line.reachable("201") is True
        with pytest.raises(TimeoutError):  # its CRLF keepalives and the open connection do the work
            await phone.recv(timeout=0.6)
        line._transports.stream_connection("tcp", ("127.0.0.1", phone.port)).close()
        [binding] = line.bindings("201")
        assert line.reachable("201") is False
        assert line.reachability(binding).reason == "its TCP connection is closed"
        with pytest.raises(DialFailed) as failed:
            await line.dial_extension("201")
        assert failed.value.detail == "extension 201 is not reachable: its TCP connection is closed"
    finally:
        await phone.close()
        await line.stop()
