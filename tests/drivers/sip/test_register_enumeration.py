"""Extension enumeration through the ban counter: a scanner gets exactly as many attempts before the
ban for an extension that exists as for one that does not, and a phone's own REGISTER cycle never
counts against it.

First the registrar behind the source guard with a fake clock (wired as ``SipLine._on_register``
wires them), then a running SipLine over UDP.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.sip import registrar as registrar_module
from drivers.sip.digest import (
    NONCE_LIFETIME_S,
    DigestServer,
    authorization,
    pick_challenge,
)
from drivers.sip.guard import GuardConfig, SourceGuard
from drivers.sip.message import SipRequest
from drivers.sip.registrar import FREE_UNANSWERED_CHALLENGES, RegisterOutcome, Registrar
from tests.drivers.sip import test_line_security as wire
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id
from tests.drivers.sip.test_line_security import secure_line  # noqa: F401  (a fixture)
from tests.drivers.sip.test_registrar import register

BAN_AFTER = 10
MAX_TRIES = 30  # well past every ban below: a source never banned shows up as None
SCANNER = ("198.51.100.7", 40000)
PHONE = ("192.0.2.10", 5062)
PASSWORDS = {"201": "s3cret", "202": "other"}
FORGED = ('Digest username="{u}", realm="branchline", nonce="bm90LW91cnM", uri="sip:branchline", '
          'response="00000000000000000000000000000000", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"')


class GuardedRegistrar:
    """The registrar behind the source guard, wired as ``SipLine._on_register`` wires them."""

    def __init__(self) -> None:
        self.guard = SourceGuard(GuardConfig(ban_after=BAN_AFTER, failure_window_s=60.0, ban_s=300.0))
        self.registrar = Registrar(DigestServer("branchline", PASSWORDS, ("MD5",)))
        self.now = 0.0

    def send(self, request: SipRequest, source: tuple[str, int]) -> RegisterOutcome | None:
        """The answer, or None when the guard drops the request."""
        self.now += 0.1
        if not self.guard.admit(source[0], self.now):
            return None
        outcome = self.registrar.handle(request, source, "udp", self.now)
        if outcome.failure is not None:
            self.guard.failure(source[0], outcome.failure, self.now)
        return outcome

    def answer(self, challenge: RegisterOutcome, user: str, password: str, source: tuple[str, int],
               **kw) -> RegisterOutcome | None:
        auth = authorization(offered(challenge), "REGISTER", "sip:branchline", user, password, 1)
        return self.send(register(user, auth=auth, **kw), source)

    def failures(self) -> int:
        return self.guard.statistics(self.now).failures


def offered(challenge: RegisterOutcome) -> dict[str, str]:
    return pick_challenge([v for k, v in challenge.headers if k == "WWW-Authenticate"])


def statuses(*outcomes: RegisterOutcome | None) -> list[int]:
    """What a scanner sees of each try: the status of every answer, none once dropped."""
    return [o.status for o in outcomes if o is not None]


Try = Callable[[GuardedRegistrar, str], list[int]]


def no_credentials(box: GuardedRegistrar, user: str) -> list[int]:
    return statuses(box.send(register(user), SCANNER))


def wrong_password(box: GuardedRegistrar, user: str) -> list[int]:
    challenge = box.send(register(user), SCANNER)
    if challenge is None:
        return []
    return statuses(challenge, box.answer(challenge, user, "guess", SCANNER))


def forged_nonce(box: GuardedRegistrar, user: str) -> list[int]:
    return statuses(box.send(register(user, auth=FORGED.format(u=user)), SCANNER))


def tries_until_banned(attempt: Try, user: str) -> tuple[int | None, list[list[int]]]:
    box = GuardedRegistrar()
    answers = []
    for n in range(1, MAX_TRIES + 1):
        answers.append(attempt(box, user))
        if box.guard.is_banned(SCANNER[0], box.now):
            return n, answers
    return None, answers


@pytest.mark.parametrize("attempt,expected", [
    (no_credentials, FREE_UNANSWERED_CHALLENGES + BAN_AFTER),  # a sweep that never answers
    (forged_nonce, FREE_UNANSWERED_CHALLENGES + BAN_AFTER),  # credentials we cannot judge: challenged again
    (wrong_password, BAN_AFTER),  # each answered challenge is free, each 403 counts
], ids=["no-credentials", "forged-nonce", "wrong-password"])
def test_known_and_unknown_user_get_the_same_tries_before_the_ban(attempt: Try, expected: int) -> None:
    known, known_answers = tries_until_banned(attempt, "201")
    unknown, unknown_answers = tries_until_banned(attempt, "nosuchuser")
    assert known == unknown == expected
    assert known_answers == unknown_answers  # status for status, up to the ban


def test_ban_reason_for_a_sweep_does_not_name_the_user_as_unknown() -> None:
    reasons = {}
    for user in ("201", "nosuchuser"):
        registrar = Registrar(DigestServer("branchline", PASSWORDS))
        outcomes = [registrar.handle(register(user), SCANNER, "udp", 0.0)
                    for _ in range(FREE_UNANSWERED_CHALLENGES + 1)]
        assert [o.failure for o in outcomes[:-1]] == [None] * FREE_UNANSWERED_CHALLENGES
        reasons[user] = outcomes[-1].failure.replace(repr(user), "<user>")
    assert reasons["201"] == reasons["nosuchuser"] == \
        f"REGISTER for <user> without usable credentials ({FREE_UNANSWERED_CHALLENGES + 1} challenges unanswered)"


def test_phone_register_cycle_never_counts() -> None:
    box = GuardedRegistrar()
    for _ in range(30):  # 401 then 200, as a phone does at boot and, many of them, on every refresh
        challenge = box.send(register("201"), PHONE)
        assert challenge.status == 401
        assert box.answer(challenge, "201", "s3cret", PHONE).status == 200
    assert box.failures() == 0 and not box.guard.is_banned(PHONE[0], box.now)


def test_phone_refreshing_on_a_stale_nonce_never_counts() -> None:
    box = GuardedRegistrar()
    params = offered(box.send(register("201"), PHONE))
    for nc in range(1, 31):  # refreshes with its last nonce, each time after that nonce's lifetime
        box.now += NONCE_LIFETIME_S
        auth = authorization(params, "REGISTER", "sip:branchline", "201", "s3cret", nc)
        stale = box.send(register("201", auth=auth), PHONE)
        assert stale.status == 401 and "stale=true" in stale.headers[0][1]
        assert box.answer(stale, "201", "s3cret", PHONE).status == 200
        params = offered(stale)
    assert box.failures() == 0


def test_phone_registering_several_accounts_at_once_never_counts() -> None:
    box = GuardedRegistrar()
    for _ in range(30):  # both accounts challenged before the phone answers either, from one socket
        challenges = {user: box.send(register(user, call_id=f"{user}@phone"), PHONE) for user in PASSWORDS}
        for user, challenge in challenges.items():
            assert box.answer(challenge, user, PASSWORDS[user], PHONE, call_id=f"{user}@phone").status == 200
    assert box.failures() == 0


def test_phones_behind_one_nat_never_count() -> None:
    box = GuardedRegistrar()
    phones = [("203.0.113.5", port) for port in range(5060, 5072)]  # 12 phones, one public address
    for _ in range(3):  # a power cut: every phone challenged before any answers
        challenges = [box.send(register("201", call_id=f"{port}@phone"), (ip, port)) for ip, port in phones]
        for (ip, port), challenge in zip(phones, challenges):
            assert box.answer(challenge, "201", "s3cret", (ip, port), call_id=f"{port}@phone").status == 200
    assert box.failures() == 0


def test_unanswered_challenges_are_remembered_for_a_bounded_number_of_addresses(monkeypatch) -> None:
    monkeypatch.setattr(registrar_module, "MAX_CHALLENGED_ADDRESSES", 2)
    registrar = Registrar(DigestServer("branchline", PASSWORDS))
    sweepers = [("198.51.100.7", port) for port in (1, 2, 3)]
    for source in sweepers:
        for _ in range(FREE_UNANSWERED_CHALLENGES):
            assert registrar.handle(register("201"), source, "udp", 0.0).failure is None
    assert registrar.handle(register("201"), sweepers[2], "udp", 0.0).failure is not None
    assert registrar.handle(register("201"), sweepers[0], "udp", 0.0).failure is None  # forgotten: starts again


# ---- a running SipLine over UDP --------------------------------------------------------------------
async def line_tries_until_banned(line, peer: SipPeer, user: str, password: str | None) -> int | None:
    bans = line.guard_statistics().bans_total
    for n in range(1, MAX_TRIES + 1):
        if password is None:
            peer.send(wire.register(peer, user, call_id=new_call_id(), cseq=1))
            await peer.expect(401)
        else:
            _, final = await wire.attempt(peer, user, password)
            assert final.status == 403
        # the line reports a failure to the guard before its answer reaches us
        if line.guard_statistics().bans_total > bans:
            return n
    return None


async def assert_silenced(peer: SipPeer, bystander: SipPeer, user: str) -> None:
    peer.send(wire.register(peer, user, call_id=new_call_id(), cseq=1))
    # sent after the peer's: once the bystander is answered, the peer's request was handled (dropped)
    answer = await bystander.recv_after(bystander.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    assert answer.status == 200 and peer.queue.empty()


@pytest.mark.parametrize("password", [None, "guess"], ids=["no-credentials", "wrong-password"])
async def test_line_bans_known_and_unknown_user_after_the_same_tries(secure_line, password) -> None:  # noqa: F811
    factory, make_peer = secure_line
    line = await factory()
    known, unknown, bystander = [await make_peer(line, f"127.0.0.{i}") for i in (2, 3, 4)]
    known_tries = await line_tries_until_banned(line, known, "201", password)
    unknown_tries = await line_tries_until_banned(line, unknown, "nosuchuser", password)
    assert known_tries == unknown_tries == (BAN_AFTER if password else FREE_UNANSWERED_CHALLENGES + BAN_AFTER)
    await assert_silenced(known, bystander, "201")
    await assert_silenced(unknown, bystander, "nosuchuser")


async def test_line_phone_register_cycle_is_never_banned(secure_line) -> None:  # noqa: F811
    factory, make_peer = secure_line
    line = await factory()
    phone = await make_peer(line)
    for _ in range(30):
        challenge, ok = await wire.attempt(phone, "201", "correct-horse-battery")
        assert (challenge.status, ok.status) == (401, 200)
    stats = line.guard_statistics()
    assert stats.failures == 0 and stats.bans_total == 0
    assert len(line.bindings("201")) == 1
