"""The digest ``uri`` must name the Request-URI (RFC 2617 §3.2.2.5, URI equality of RFC 3261 §19.1.4).

Credentials computed correctly for another URI are a failed authentication, answered and counted
exactly like a wrong password, so a captured Authorization header cannot be replayed elsewhere.
"""
from __future__ import annotations

import pytest

from drivers.sip.digest import DigestServer, Verdict, authorization, digest_uri_matches, pick_challenge
from drivers.sip.message import parse_message
from drivers.sip.registrar import Registrar
from drivers.sip.uri import parse_uri

SRC = ("192.0.2.10", 5062)


def _register(request_uri: str, auth: str | None, cseq: int) -> bytes:
    lines = [
        f"REGISTER {request_uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKuri{cseq}",
        "From: <sip:201@branchline>;tag=ph1",
        "To: <sip:201@branchline>",
        "Call-ID: uri-check@phone",
        f"CSeq: {cseq} REGISTER",
        "Contact: <sip:201@192.0.2.10:5062>",
        "Expires: 600",
    ]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(DigestServer("branchline", {"201": "s3cret"}))


def _attempt(registrar: Registrar, request_uri: str, digest_uri: str, password: str = "s3cret"):
    """REGISTER to ``request_uri`` with correct-hash credentials computed over ``digest_uri``."""
    first = registrar.handle(parse_message(_register(request_uri, None, 1)), SRC, "udp", 0.0)
    assert first.status == 401
    challenge = pick_challenge([v for k, v in first.headers if k == "WWW-Authenticate"])
    auth = authorization(challenge, "REGISTER", digest_uri, "201", password, 1)
    return registrar.handle(parse_message(_register(request_uri, auth, 2)), SRC, "udp", 0.5)


@pytest.mark.parametrize(("request_uri", "digest_uri"), [
    ("sip:branchline", "sip:branchline"),
    ("sip:127.0.0.1:5070", "sip:127.0.0.1:5070"),
    ("sip:BranchLine", "SIP:branchline"),  # scheme and host are case-insensitive
    ("sip:branchline;transport=tcp", "sip:branchline"),  # transport in one only: ignored (§19.1.4)
    ("sip:branchline;transport=TCP", "sip:branchline;transport=tcp"),  # parameter values: any case
])
def test_matching_uri_registers(registrar, request_uri, digest_uri) -> None:
    out = _attempt(registrar, request_uri, digest_uri)
    assert out.status == 200 and out.failure is None
    assert [b.contact for b in registrar.location.bindings("201", 1.0)] == ["sip:201@192.0.2.10:5062"]


def test_mismatching_host_is_a_failed_authentication(registrar) -> None:
    out = _attempt(registrar, "sip:branchline", "sip:elsewhere.example")
    assert out.status == 403 and out.headers == ()
    assert "digest uri 'sip:elsewhere.example' is not the Request-URI 'sip:branchline'" in out.failure
    assert registrar.location.bindings("201", 1.0) == ()


def test_mismatch_gets_the_same_answer_as_a_wrong_password(registrar) -> None:
    mismatch = _attempt(registrar, "sip:branchline", "sip:other")
    wrong = _attempt(registrar, "sip:branchline", "sip:branchline", password="guess")
    assert (mismatch.status, mismatch.reason, mismatch.headers) == (wrong.status, wrong.reason, wrong.headers)
    assert mismatch.failure and wrong.failure and "wrong password" in wrong.failure


def test_mismatching_user_port_or_scheme(registrar) -> None:
    assert _attempt(registrar, "sip:201@branchline", "sip:202@branchline").status == 403
    assert _attempt(registrar, "sip:Alice@branchline", "sip:alice@branchline").status == 403  # user: exact case
    assert _attempt(registrar, "sip:branchline", "sip:branchline:5060").status == 403  # absent port is not 5060
    assert _attempt(registrar, "sip:branchline", "sips:branchline").status == 403
    assert _attempt(registrar, "sip:branchline", "not a uri").status == 403
    assert registrar.location.bindings("201", 1.0) == ()


def test_escaped_user_is_equivalent(registrar) -> None:
    out = _attempt(registrar, "sip:201@branchline", "sip:%32%301@branchline")
    assert out.status == 200


def test_comparison_rules_directly() -> None:
    req = parse_uri("sip:alice@atlanta.com;transport=tcp")
    assert digest_uri_matches("sip:%61lice@AtLanTa.CoM;Transport=TCP", req)
    assert not digest_uri_matches("sip:alice@atlanta.com;transport=udp", req)  # in both, different
    assert not digest_uri_matches("sip:alice@atlanta.com;transport=tcp;maddr=239.255.255.1", req)
    assert not digest_uri_matches("sip:alice:secretword@atlanta.com;transport=tcp", req)  # password
    assert digest_uri_matches("sip:carol@chicago.com?Subject=next%20meeting",
                              parse_uri("sip:carol@chicago.com?subject=next%20meeting"))
    assert not digest_uri_matches("sip:carol@chicago.com?Subject=lunch", parse_uri("sip:carol@chicago.com"))


def test_server_check_reports_the_mismatch() -> None:
    server = DigestServer("branchline", {"201": "s3cret"})
    challenge = pick_challenge(list(server.challenges(0.0)))
    auth = authorization(challenge, "REGISTER", "sip:other", "201", "s3cret", 1)
    result = server.check(auth, "REGISTER", 0.1, parse_uri("sip:branchline"))
    assert result.verdict is Verdict.FAILED and result.username == "201"
    # the failed attempt did not consume the nonce-count: the right URI with nc=1 still works
    good = authorization(challenge, "REGISTER", "sip:branchline", "201", "s3cret", 1)
    assert server.check(good, "REGISTER", 0.2, parse_uri("sip:branchline")).verdict is Verdict.OK
