"""HTTP Digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760): SHA-256 and MD5, qop=auth. Pure code.

Server side (``DigestServer``): nonces are signed with a per-process secret and carry
their issue time, so a forged or expired nonce is recognised without a lookup; issued
nonces are also kept in a bounded table with the highest nonce-count seen, so a
replayed (nonce, nc) pair is refused. An unknown user and a wrong password produce
the same verdict (``FAILED``) after the same work, so the wire never tells them apart;
only ``reason`` (for logs and the source guard) differs. Credentials whose ``uri`` does not
name the Request-URI (RFC 3261 §19.1.4 comparison) are ``FAILED`` too (RFC 2617 §3.2.2.5).

Client side (``authorization``): answers the strongest challenge we support.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping
from urllib.parse import unquote

from drivers.sip.errors import SipSyntaxError
from drivers.sip.uri import SIP_SCHEMES, Uri, parse_uri

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
NONCE_LIFETIME_S = 300.0  # a phone answers a challenge within ms; after this it gets stale=true
MAX_NONCES = 4096  # outstanding nonces remembered for nonce-count checks (bounded against floods)
_DUMMY_PASSWORD = secrets.token_hex(16)  # hashed for unknown users so both paths cost the same


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def digest_response(algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, nc: str, cnonce: str, qop: str = "auth") -> str:
    """RFC 7616 §3.4.1 response with qop=auth."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """``Digest a="b", c=d`` -> ("digest", {"a": "b", "c": "d"}); names lower-cased."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not scheme or not scheme.isalpha():
        raise SipSyntaxError(f"bad auth scheme in {value[:40]!r}")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise SipSyntaxError(f"auth parameter without value in {value[:60]!r}")
        name = rest[i:eq].strip().lower()
        if not name or not name.replace("-", "").isalnum():
            raise SipSyntaxError(f"bad auth parameter name {name[:20]!r}")
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(rest[i])
                i += 1
            if i >= n:
                raise SipSyntaxError("unterminated quoted auth parameter")
            i += 1
            params[name] = "".join(out)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str  # canonical: "MD5" | "SHA-256" (or what the peer sent, upper case)
    qop: str | None
    nc: str | None
    cnonce: str | None


def parse_credentials(value: str) -> Credentials:
    scheme, p = parse_auth_header(value)
    if scheme != "digest":
        raise SipSyntaxError(f"auth scheme {scheme!r} is not Digest")
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in p:
            raise SipSyntaxError(f"Digest credentials without {name}")
    return Credentials(p["username"], p["realm"], p["nonce"], p["uri"], p["response"].lower(),
                       p.get("algorithm", "MD5").upper(), p.get("qop"), p.get("nc"), p.get("cnonce"))


# ---- digest-uri vs Request-URI (RFC 2617 §3.2.2.5, RFC 7616 §3.4.6, RFC 3261 §19.1.4) ----------------
# uri-parameters that make two SIP URIs different when only one of them carries it (§19.1.4).
_PARAMS_THAT_MUST_BOTH_APPEAR = frozenset({"user", "ttl", "method", "maddr"})


def _has_password(text: str) -> bool:
    """True for ``sip:user:secret@host``. Our parser drops the password, so it is looked for here."""
    scheme, _, rest = text.strip().partition(":")
    if scheme.lower() not in SIP_SCHEMES:
        return False
    userinfo, at, _ = rest.partition("?")[0].rpartition("@")
    return bool(at) and ":" in userinfo


def _norm_params(uri: Uri) -> dict[str, str | None]:
    return {unquote(k).lower(): None if v is None else unquote(v).lower() for k, v in uri.params}


def _norm_headers(uri: Uri) -> frozenset[tuple[str, str]]:
    pairs = (part.partition("=") for part in uri.headers.split("&") if part)
    return frozenset((unquote(name).lower(), unquote(value)) for name, _, value in pairs)


def uris_equivalent(a: Uri, b: Uri) -> bool:
    """URI comparison of RFC 3261 §19.1.4 (``parse_uri`` already lower-cases scheme and host and
    unescapes the user part, so ``sip:%61lice@H`` equals ``sip:alice@h``).

    - scheme, user (case-sensitive), host and port must be equal; an absent port is NOT 5060.
    - a uri-parameter present in both must have the same value (case-insensitive);
      ``user``, ``ttl``, ``method`` and ``maddr`` must not appear in only one of them.
    - other parameters that appear in only one are ignored. That is why a phone that puts
      ``;transport=tcp`` in the digest uri but not in the Request-URI (or the reverse) still
      matches: §19.1.4 lists transport among the parameters compared only when both carry it,
      and the Request-URI and the digest uri name the same resource either way.
    - header components must be present in both and equal.
    """
    if a.scheme != b.scheme:
        return False
    if a.scheme not in SIP_SCHEMES:  # tel: or other: compare what the parser kept, parameters included
        return (a.user, a.host, _norm_params(a)) == (b.user, b.host, _norm_params(b))
    if (a.user, a.host, a.port) != (b.user, b.host, b.port):
        return False
    pa, pb = _norm_params(a), _norm_params(b)
    for name in pa.keys() | pb.keys():
        if name in pa and name in pb:
            if pa[name] != pb[name]:
                return False
        elif name in _PARAMS_THAT_MUST_BOTH_APPEAR:
            return False
    return _norm_headers(a) == _norm_headers(b)


def digest_uri_matches(digest_uri: str, request_uri: Uri) -> bool:
    """Does the ``uri`` of the credentials name the Request-URI of the request they came with?"""
    if _has_password(digest_uri):  # never in a Request-URI we parse; NOT RECOMMENDED by §19.1.1
        return False
    try:
        return uris_equivalent(parse_uri(digest_uri), request_uri)
    except SipSyntaxError:
        return False


class Verdict(StrEnum):
    OK = "ok"
    CHALLENGE = "challenge"  # no (usable) credentials: send a fresh challenge, not a failure
    STALE = "stale"  # right password, old or unknown nonce: challenge with stale=true
    FAILED = "failed"  # wrong password, unknown user, replay, malformed: 403, counted by the guard


@dataclass(frozen=True, slots=True)
class AuthResult:
    verdict: Verdict
    username: str | None = None
    reason: str = ""


class DigestServer:
    def __init__(self, realm: str, users: Mapping[str, str],
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), secret: bytes | None = None) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"digest algorithms must be from {sorted(ALGORITHMS)}, not {algorithms}")
        self.realm = realm
        self._users = dict(users)
        self.algorithms = algorithms
        self._secret = secret or secrets.token_bytes(32)
        self._nonces: OrderedDict[str, int] = OrderedDict()  # nonce -> highest nc accepted

    # ---- nonces ---------------------------------------------------------------------------
    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]

    def new_nonce(self, now: float) -> str:
        body = struct.pack("!d", now) + secrets.token_bytes(8)
        nonce = base64.urlsafe_b64encode(body + self._sign(body)).decode("ascii").rstrip("=")
        self._nonces[nonce] = 0
        if len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        return nonce

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since we issued ``nonce``, or None if we never did (forged / garbage)."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._sign(raw[:16])):
            return None
        return now - struct.unpack("!d", raw[:8])[0]

    def challenges(self, now: float, *, stale: bool = False) -> tuple[str, ...]:
        """WWW-Authenticate values, strongest algorithm first (RFC 8760 §2.4)."""
        nonce = self.new_nonce(now)
        extra = ", stale=true" if stale else ""
        return tuple(f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
                     for alg in self.algorithms)

    # ---- verification -----------------------------------------------------------------------
    def check(self, authorization: str | None, method: str, now: float,
              request_uri: Uri | None = None) -> AuthResult:
        """Verify ``authorization`` for a ``method`` request.

        ``request_uri`` is the Request-URI of that request. Every caller that authenticates a SIP
        request passes it: credentials whose ``uri`` names another resource are a FAILED verdict,
        exactly like a wrong password (RFC 2617 §3.2.2.5), otherwise a captured Authorization
        header could be replayed against another URI. Only pure digest computations (no request
        at hand) leave it out.
        """
        if authorization is None:
            return AuthResult(Verdict.CHALLENGE)
        try:
            cred = parse_credentials(authorization)
        except SipSyntaxError as exc:
            return AuthResult(Verdict.FAILED, None, f"malformed credentials ({exc})")
        if cred.realm != self.realm or cred.algorithm not in self.algorithms:
            return AuthResult(Verdict.CHALLENGE, cred.username)
        age = self._nonce_age(cred.nonce, now)
        if age is None:
            return AuthResult(Verdict.CHALLENGE, cred.username)
        if cred.qop != "auth" or not cred.nc or not cred.cnonce or len(cred.nc) != 8:
            return AuthResult(Verdict.FAILED, cred.username, "credentials without qop=auth")
        try:
            nc = int(cred.nc, 16)
        except ValueError:
            return AuthResult(Verdict.FAILED, cred.username, "bad nonce-count")
        known = cred.username in self._users
        password = self._users.get(cred.username, _DUMMY_PASSWORD)
        expected = digest_response(cred.algorithm, cred.username, cred.realm, password, method, cred.uri,
                                   cred.nonce, cred.nc, cred.cnonce, "auth")
        if not hmac.compare_digest(expected, cred.response) or not known:
            return AuthResult(Verdict.FAILED, cred.username, "wrong password" if known else "unknown user")
        if request_uri is not None and not digest_uri_matches(cred.uri, request_uri):
            return AuthResult(Verdict.FAILED, cred.username,
                              f"digest uri {cred.uri[:60]!r} is not the Request-URI {str(request_uri)[:60]!r}")
        if age > NONCE_LIFETIME_S or cred.nonce not in self._nonces:
            return AuthResult(Verdict.STALE, cred.username, "stale nonce")
        if nc <= self._nonces[cred.nonce]:
            return AuthResult(Verdict.FAILED, cred.username, f"replayed nonce-count {cred.nc}")
        self._nonces[cred.nonce] = nc
        return AuthResult(Verdict.OK, cred.username)


# ---- client side ---------------------------------------------------------------------------------
def pick_challenge(values: list[str]) -> dict[str, str] | None:
    """The strongest Digest challenge we can answer among WWW-Authenticate values."""
    best: tuple[int, dict[str, str]] | None = None
    rank = {"SHA-256": 2, "MD5": 1}
    for value in values:
        try:
            scheme, params = parse_auth_header(value)
        except SipSyntaxError:
            continue
        alg = params.get("algorithm", "MD5").upper()
        if scheme != "digest" or alg not in rank or "nonce" not in params or "realm" not in params:
            continue
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            continue
        params["algorithm"] = alg
        if best is None or rank[alg] > best[0]:
            best = (rank[alg], params)
    return best[1] if best else None


def authorization(challenge: dict[str, str], method: str, uri: str, username: str, password: str,
                  nc: int, cnonce: str | None = None) -> str:
    """The Authorization value answering ``challenge`` (qop=auth when offered, RFC 2069 otherwise)."""
    alg = challenge["algorithm"]
    realm, nonce = challenge["realm"], challenge["nonce"]
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "qop" in challenge:
        cnonce = cnonce or secrets.token_hex(8)
        nc_text = f"{nc:08x}"
        response = digest_response(alg, username, realm, password, method, uri, nonce, nc_text, cnonce)
        parts += [f'response="{response}"', f"algorithm={alg}", f'cnonce="{cnonce}"', "qop=auth",
                  f"nc={nc_text}"]
    else:
        ha1 = _h(alg, f"{username}:{realm}:{password}")
        response = _h(alg, f"{ha1}:{nonce}:{_h(alg, f'{method}:{uri}')}")
        parts += [f'response="{response}"', f"algorithm={alg}"]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)
