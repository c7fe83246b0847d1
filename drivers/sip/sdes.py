"""SDES: SRTP keys in SDP ``a=crypto`` lines (RFC 4568). Pure code.

An offer's audio stream may carry crypto lines (``RTP/SAVP``, or best effort on
``RTP/AVP``). We take the first line whose suite we support and whose key parameter
is a single inline key without MKI or session parameters, and answer with the same
tag and suite and a key of our own. Keys in SDP are only as secret as the signalling:
we accept them when the request came over TLS. Over UDP/TCP an ``RTP/SAVP`` offer is
refused (488, the operator is told why) and best-effort crypto lines are ignored.
"""
from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from drivers.sip.errors import SdpError
from media.srtp import SUITES, SrtpKeys

SECURE_PROFILES = frozenset({"RTP/SAVP"})


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable ``a=crypto`` line of the far end."""

    tag: int
    suite: str
    key: bytes  # master key || master salt

    def __repr__(self) -> str:  # never print key material into a log
        return f"Crypto({self.tag}, {self.suite})"


def parse_crypto(value: str) -> Crypto | None:
    """``1 AES_CM_128_HMAC_SHA1_80 inline:<base64>[|lifetime]`` -> Crypto; None for a line we
    cannot use (unknown suite, several keys, MKI, session parameters, a key of the wrong size)."""
    parts = value.split()
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in SUITES:
        return None
    method, _, key_info = parts[2].partition(":")
    if method != "inline" or ";" in key_info:
        return None
    fields = key_info.split("|")
    if len(fields) > 2 or (len(fields) == 2 and ":" in fields[1]):  # an MKI field (n:len)
        return None
    try:
        key = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != SUITES[parts[1]][1]:
        return None
    return Crypto(int(parts[0]), parts[1], key)


def choose_crypto(values: tuple[str, ...]) -> Crypto | None:
    """The first of the offer's crypto lines we can use (the offerer lists its preference first)."""
    for value in values:
        crypto = parse_crypto(value)
        if crypto is not None:
            return crypto
    return None


def check_profile(proto: str, crypto: Crypto | None, secure_signalling: bool) -> Crypto | None:
    """The crypto to use for an offered stream, by what the signalling protects; SdpError 488
    for an ``RTP/SAVP`` stream we cannot serve."""
    if proto.upper() not in SECURE_PROFILES:
        return crypto if secure_signalling else None  # best-effort SRTP only with keys kept secret
    if not secure_signalling:
        raise SdpError(488, "SRTP (RTP/SAVP) offered over unencrypted signalling; the keys would travel "
                            "in clear. Have the phone or trunk use SIP over TLS (the box's [sip] tls_port) for SRTP")
    if crypto is None:
        raise SdpError(488, "SRTP offered without a crypto suite we support "
                            f"({', '.join(SUITES)}, one inline key, no MKI)")
    return crypto


def is_secure(conn) -> bool:
    """The connection a request came over keeps SDP secret (TLS)."""
    return getattr(conn, "transport", "") == "TLS"


def local_key_for(crypto: Crypto | None, current: bytes | None) -> bytes | None:
    """Our master key for ``crypto``'s suite: the call's current one when it fits, else a new one."""
    if crypto is None:
        return current
    if current is not None and len(current) == SUITES[crypto.suite][1]:
        return current
    return secrets.token_bytes(SUITES[crypto.suite][1])


def new_key(suite: str) -> bytes:
    return secrets.token_bytes(SUITES[suite][1])


def crypto_line(crypto: Crypto, local_key: bytes) -> str:
    """Our answer's ``a=crypto`` line: their tag and suite, our key."""
    return f"a=crypto:{crypto.tag} {crypto.suite} inline:{base64.b64encode(local_key).decode('ascii')}"


def srtp_keys(crypto: Crypto | None, local_key: bytes | None) -> SrtpKeys | None:
    """What the RTP session needs for ``crypto`` (None: plain RTP)."""
    if crypto is None or local_key is None:
        return None
    return SrtpKeys(crypto.suite, local_key, crypto.key)
