"""Digest (RFC 7616 / RFC 8760): vectors, server verdicts, nonce expiry and nonce-count replay."""
from __future__ import annotations

import pytest

from drivers.sip import digest
from drivers.sip.digest import (
    DigestServer,
    Verdict,
    authorization,
    digest_response,
    parse_auth_header,
    parse_credentials,
    pick_challenge,
)
from drivers.sip.errors import SipSyntaxError

RFC7616 = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
           "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
           "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")


def test_rfc7616_section_3_9_1_vectors() -> None:
    assert digest_response("MD5", *RFC7616) == "8ca523f5e9506fed4657c9700eebdbec"
    assert digest_response("SHA-256", *RFC7616) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def _answer(server: DigestServer, now: float, user: str, password: str, alg: str, nc: int = 1) -> str:
    challenges = [c for c in server.challenges(now) if f"algorithm={alg}" in c]
    challenge = pick_challenge(challenges)
    assert challenge is not None and challenge["algorithm"] == alg
    return authorization(challenge, "REGISTER", "sip:example.com", user, password, nc)


@pytest.mark.parametrize("alg", ["SHA-256", "MD5"])
def test_round_trip_ok(alg: str) -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    result = server.check(_answer(server, 10.0, "201", "s3cret", alg), "REGISTER", 10.5)
    assert result.verdict is Verdict.OK and result.username == "201"


def test_challenges_strongest_first_and_client_prefers_sha256() -> None:
    server = DigestServer("branchline", {"201": "x"})
    values = server.challenges(0.0)
    assert [parse_auth_header(v)[1]["algorithm"] for v in values] == ["SHA-256", "MD5"]
    assert all(parse_auth_header(v)[1]["qop"] == "auth" for v in values)
    assert pick_challenge(list(reversed(values)))["algorithm"] == "SHA-256"


def test_unknown_user_and_wrong_password_are_the_same_verdict() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    wrong = server.check(_answer(server, 0.0, "201", "guess", "MD5"), "REGISTER", 0.0)
    unknown = server.check(_answer(server, 0.0, "999", "guess", "MD5"), "REGISTER", 0.0)
    assert wrong.verdict is unknown.verdict is Verdict.FAILED
    assert (wrong.reason, unknown.reason) == ("wrong password", "unknown user")


def test_unknown_user_costs_the_same_digest_computation_as_a_wrong_password(monkeypatch) -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    answers = {user: _answer(server, 0.0, user, "guess", "SHA-256") for user in ("201", "999")}
    computed: list[str] = []

    def counting(*args: str, **kw: str) -> str:
        computed.append(args[1])  # the username
        return digest_response(*args, **kw)

    monkeypatch.setattr(digest, "digest_response", counting)
    for answer in answers.values():
        assert server.check(answer, "REGISTER", 0.0).verdict is Verdict.FAILED
    assert computed == ["201", "999"]  # the unknown user is hashed too (against a dummy password)


def test_nonce_count_replay_is_refused_and_higher_count_accepted() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    challenge = pick_challenge(list(server.challenges(0.0)))
    first = authorization(challenge, "REGISTER", "sip:example.com", "201", "s3cret", 1)
    assert server.check(first, "REGISTER", 1.0).verdict is Verdict.OK
    replay = server.check(first, "REGISTER", 2.0)
    assert replay.verdict is Verdict.FAILED and "replayed nonce-count" in replay.reason
    again = authorization(challenge, "REGISTER", "sip:example.com", "201", "s3cret", 2)
    assert server.check(again, "REGISTER", 3.0).verdict is Verdict.OK


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    later = digest.NONCE_LIFETIME_S + 1.0
    assert server.check(_answer(server, 0.0, "201", "s3cret", "SHA-256"), "REGISTER", later).verdict is Verdict.STALE
    assert server.check(_answer(server, 0.0, "201", "nope", "SHA-256"), "REGISTER", later).verdict is Verdict.FAILED
    assert 'stale=true' in server.challenges(later, stale=True)[0]


def test_forged_nonce_or_other_realm_gets_a_new_challenge() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    other = DigestServer("branchline", {"201": "s3cret"})  # another secret: its nonces are forgeries to us
    assert server.check(_answer(other, 0.0, "201", "s3cret", "MD5"), "REGISTER", 0.0).verdict is Verdict.CHALLENGE
    wrong_realm = DigestServer("elsewhere", {"201": "s3cret"})
    assert server.check(_answer(wrong_realm, 0.0, "201", "s3cret", "MD5"), "REGISTER", 0.0).verdict \
        is Verdict.CHALLENGE
    assert server.check(None, "REGISTER", 0.0).verdict is Verdict.CHALLENGE


def test_credentials_without_qop_or_garbage_fail() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    challenge = pick_challenge(list(server.challenges(0.0)))
    del challenge["qop"]  # RFC 2069 style answer
    legacy = authorization(challenge, "REGISTER", "sip:example.com", "201", "s3cret", 1)
    assert server.check(legacy, "REGISTER", 0.0).verdict is Verdict.FAILED
    assert server.check('Digest username="201", realm=', "REGISTER", 0.0).verdict is Verdict.FAILED
    assert server.check("Basic MjAxOnMzY3JldA==", "REGISTER", 0.0).verdict is Verdict.FAILED


def test_parse_credentials_quoted_escapes_and_missing_fields() -> None:
    cred = parse_credentials('Digest username="a\\"b", realm="r", nonce="n", uri="sip:x", response="AB", nc=00000001')
    assert cred.username == 'a"b' and cred.response == "ab" and cred.algorithm == "MD5"
    with pytest.raises(SipSyntaxError):
        parse_credentials('Digest realm="r", nonce="n"')
    with pytest.raises(ValueError):
        DigestServer("r", {}, ("SHA-512-256",))
