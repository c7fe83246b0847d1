"""Seeded mutation fuzzing: 100k mutated messages through the parser and the user agent.

Default run: SIP_FUZZ_COUNT (100 000) mutations, each parsed on its own (only
SipParseError with 400/416/505 may come out) and then fed to a real ``UserAgent``
with a source guard, a real registrar/digest server and an SDP-negotiating TU, as
UDP or as a TCP stream. No exception may escape and nothing may be logged at ERROR
(the UA logs TU bugs with log.exception, so that is where a hidden crash would show).
"""
from __future__ import annotations

import logging
import os
import time

from drivers.sip.digest import DigestServer
from drivers.sip.errors import FramingError, SdpError, SipParseError
from drivers.sip.guard import GuardConfig, SourceGuard
from drivers.sip.message import SipRequest, SipResponse, StreamFramer, parse_message
from drivers.sip.registrar import Registrar
from drivers.sip.sdp import negotiate, parse_sdp
from drivers.sip.useragent import UserAgent, new_tag
from tests.drivers.sip.fuzz import SEEDS, Mutator

FUZZ_COUNT = int(os.environ.get("SIP_FUZZ_COUNT", "100000"))
FUZZ_SEED = int(os.environ.get("SIP_FUZZ_SEED", "20261203"))
FUZZ_BUDGET_S = 60.0


class FakeConn:
    def __init__(self, peer: tuple[str, int], reliable: bool) -> None:
        self.peer = peer
        self.reliable = reliable
        self.sent = 0

    def send(self, data: bytes) -> None:
        assert isinstance(data, bytes) and data
        self.sent += 1

    def redirect(self, peer: tuple[str, int]) -> "FakeConn":
        return self


class FuzzTu:
    """Does what the line does with the request content: SDP negotiation, then a final answer."""

    def __init__(self) -> None:
        self.invites = 0

    def _sdp(self, request: SipRequest, txn) -> None:
        try:
            negotiate(parse_sdp(request.body))
        except SdpError as exc:
            txn.respond(exc.status, to_tag=new_tag())
            return
        txn.respond(486, to_tag=new_tag())

    def on_invite(self, request: SipRequest, txn) -> None:
        self.invites += 1
        self._sdp(request, txn)

    def on_in_dialog(self, request: SipRequest, txn) -> None:
        if request.method == "INVITE":
            self._sdp(request, txn)
        else:
            txn.respond(481)

    def on_ack(self, request: SipRequest) -> None:
        pass

    def on_cancel(self, invite_txn) -> None:
        invite_txn.respond(487, to_tag=new_tag())


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        assert isinstance(parse_message(seed), (SipRequest, SipResponse))


async def test_100k_mutations_through_parser_and_user_agent(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip")
    tu = FuzzTu()
    # a guard that never bans, so every message reaches the parser (bans are tested in test_guard)
    guard = SourceGuard(GuardConfig(rate_per_s=1e9, burst=10**9, ban_after=10**9))
    registrar = Registrar(DigestServer("branchline", {"201": "secret"}, ("SHA-256", "MD5")))
    ua: UserAgent | None = None

    def on_register(request, txn) -> None:
        outcome = registrar.handle(request, txn.conn.peer, "udp", ua.now())
        txn.respond(outcome.status, reason=outcome.reason, to_tag=new_tag(), extra=outcome.headers)

    ua = UserAgent(tu, guard=guard, on_register=on_register)
    mutator = Mutator(FUZZ_SEED)
    udp = FakeConn(("192.0.2.1", 5060), False)
    tcp = FakeConn(("192.0.2.2", 5060), True)
    framer = StreamFramer()
    parsed = refused = framing_errors = 0
    started = time.perf_counter()
    try:
        for i in range(FUZZ_COUNT):
            data = mutator.mutate()
            try:
                parse_message(data)
                parsed += 1
            except SipParseError as err:
                assert err.status in (400, 416, 505), (err, data)
                refused += 1
            if i % 10 == 0:  # the stream path: framer, then the UA
                try:
                    messages = framer.feed(data)
                except FramingError:
                    framing_errors += 1
                    framer = StreamFramer()
                    continue
                for message in messages:
                    ua.on_message(message, tcp, True)
            else:
                ua.on_message(data, udp, False)
    finally:
        ua.close()
    elapsed = time.perf_counter() - started
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
    assert parsed + refused == FUZZ_COUNT
    # the mutator must produce both kinds, or the run proves little
    assert parsed > FUZZ_COUNT // 20 and refused > FUZZ_COUNT // 5, (parsed, refused)
    assert udp.sent > FUZZ_COUNT // 2 and tu.invites > 0
    assert elapsed < FUZZ_BUDGET_S, f"{FUZZ_COUNT} mutations took {elapsed:.1f} s"
    print(f"fuzz: {FUZZ_COUNT} messages in {elapsed:.1f} s: {parsed} parsed, {refused} refused, "
          f"{framing_errors} framing errors, {udp.sent + tcp.sent} answers")
