"""Registrar and location service (RFC 3261 §10.3) driven with parsed REGISTER requests and a fake clock."""
from __future__ import annotations

import itertools

import pytest

from drivers.sip.digest import DigestServer, authorization, pick_challenge
from drivers.sip.message import SipRequest, parse_message
from drivers.sip.registrar import Registrar, RegistrarConfig

SRC = ("192.0.2.10", 5062)
_n = itertools.count(1)


def register(user: str, *, contacts: tuple[str, ...] = ("<sip:{u}@192.0.2.10:5062>",), expires: str | None = None,
             auth: str | None = None, call_id: str = "reg-1@phone", cseq: int | None = None) -> SipRequest:
    lines = [
        "REGISTER sip:branchline SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKreg{next(_n)}",
        f"From: <sip:{user}@branchline>;tag=ph1",
        f"To: <sip:{user}@branchline>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq if cseq is not None else next(_n)} REGISTER",
        "Max-Forwards: 70",
    ]
    lines += [f"Contact: {c.format(u=user)}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


class Phone:
    """Answers the registrar's challenges like a desk phone (one nonce, increasing nc)."""

    def __init__(self, registrar: Registrar, user: str, password: str) -> None:
        self.registrar, self.user, self.password = registrar, user, password
        self.challenge = None
        self.nc = 0

    def send(self, now: float, **kw):
        out = self.registrar.handle(register(self.user, **kw), SRC, "udp", now)
        if out.status == 401:
            self.challenge = pick_challenge([v for k, v in out.headers if k == "WWW-Authenticate"])
            self.nc = 1
            auth = authorization(self.challenge, "REGISTER", "sip:branchline", self.user, self.password, self.nc)
            out = self.registrar.handle(register(self.user, auth=auth, **kw), SRC, "udp", now)
        return out


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(DigestServer("branchline", {"201": "s3cret", "202": "other"}),
                     RegistrarConfig(min_expires=60, max_expires=3600, default_expires=1800))


def test_challenge_without_credentials_is_identical_for_unknown_users(registrar) -> None:
    known = registrar.handle(register("201"), SRC, "udp", 0.0)
    unknown = registrar.handle(register("999"), SRC, "udp", 0.0)
    assert known.status == unknown.status == 401
    assert [k for k, _ in known.headers] == [k for k, _ in unknown.headers] == ["WWW-Authenticate"] * 2
    strip = [v.split("nonce=")[0] + v.split('", ', 2)[-1] for _, v in known.headers]
    assert strip == [v.split("nonce=")[0] + v.split('", ', 2)[-1] for _, v in unknown.headers]
    assert known.failure is None and unknown.failure is None  # a phone's first REGISTER: the guard counts neither


def test_register_binding_and_query(registrar) -> None:
    phone = Phone(registrar, "201", "s3cret")
    out = phone.send(100.0, expires="600")
    assert out.status == 200 and out.failure is None and out.changed
    assert out.headers == (("Contact", "<sip:201@192.0.2.10:5062>;expires=600"),)
    [binding] = registrar.location.bindings("201", 100.0)
    assert binding.source == SRC and binding.transport == "udp" and binding.expires_at == 700.0
    query = phone.send(400.0, contacts=())
    assert query.status == 200 and query.headers == (("Contact", "<sip:201@192.0.2.10:5062>;expires=300"),)
    assert not query.changed
    assert registrar.location.bindings("201", 700.1) == ()  # expired


def test_expires_limits(registrar) -> None:
    phone = Phone(registrar, "201", "s3cret")
    brief = phone.send(0.0, expires="30")
    assert brief.status == 423 and brief.headers == (("Min-Expires", "60"),)
    long = phone.send(0.0, expires="86400")
    assert long.headers == (("Contact", "<sip:201@192.0.2.10:5062>;expires=3600"),)
    default = phone.send(0.0, contacts=("<sip:201@192.0.2.11>",))
    assert ("Contact", "<sip:201@192.0.2.11>;expires=1800") in default.headers
    param = phone.send(0.0, contacts=("<sip:201@192.0.2.12>;expires=120",), expires="900")
    assert ("Contact", "<sip:201@192.0.2.12>;expires=120") in param.headers


def test_unregister_one_and_all(registrar) -> None:
    phone = Phone(registrar, "201", "s3cret")
    phone.send(0.0, contacts=("<sip:201@192.0.2.10:5062>", "<sip:201@192.0.2.11>"), expires="600")
    assert len(registrar.location.bindings("201", 1.0)) == 2
    one = phone.send(1.0, contacts=("<sip:201@192.0.2.11>;expires=0",))
    assert one.headers == (("Contact", "<sip:201@192.0.2.10:5062>;expires=599"),)
    bad = phone.send(2.0, contacts=("*",))
    assert bad.status == 400
    gone = phone.send(2.0, contacts=("*",), expires="0")
    assert gone.status == 200 and gone.headers == () and gone.changed
    assert registrar.location.bindings("201", 2.0) == ()


def test_wrong_password_and_unknown_user_get_the_same_403(registrar) -> None:
    wrong = Phone(registrar, "201", "guess").send(0.0)
    unknown = Phone(registrar, "999", "guess").send(0.0)
    assert wrong.status == unknown.status == 403
    assert wrong.headers == unknown.headers == () and wrong.reason == unknown.reason
    assert "wrong password" in wrong.failure and "unknown user" in unknown.failure


def test_cannot_register_someone_elses_extension(registrar) -> None:
    server = registrar.auth
    challenge = pick_challenge(list(server.challenges(0.0)))
    auth = authorization(challenge, "REGISTER", "sip:branchline", "202", "other", 1)
    out = registrar.handle(register("201", auth=auth), SRC, "udp", 0.0)  # 202's credentials, 201's AOR
    assert out.status == 403 and "tried to register" in out.failure
    assert registrar.location.bindings("201", 0.0) == ()


def test_out_of_order_cseq_is_refused(registrar) -> None:
    phone = Phone(registrar, "201", "s3cret")
    assert phone.send(0.0, cseq=10, expires="600").status == 200
    stale = phone.send(1.0, cseq=5, expires="0")
    assert stale.status == 500
    assert len(registrar.location.bindings("201", 1.0)) == 1


def test_bad_expires_is_400(registrar) -> None:
    phone = Phone(registrar, "201", "s3cret")
    assert phone.send(0.0, expires="soon").status == 400
    assert phone.send(0.0, contacts=("<sip:201@h>;expires=²",)).status == 400
