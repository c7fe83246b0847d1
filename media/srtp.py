"""SRTP protection for one RTP leg with keys exchanged in SDP (SDES, RFC 4568).

libsrtp (through ``pylibsrtp``, which aiortc already depends on) does the cryptography.
This module only knows the suite names SDP uses and the master key + salt length each
needs, and holds one session for what we send and one for what we receive.
"""
from __future__ import annotations

from dataclasses import dataclass

from pylibsrtp import Error, Policy, Session

# SDP crypto-suite name -> (libsrtp profile, master key + salt length in bytes)
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),  # RFC 4568
    "AES_CM_128_HMAC_SHA1_32": (Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    "AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),  # RFC 7714
    "AEAD_AES_256_GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
}

SrtpError = Error  # what unprotect raises for a packet that fails authentication or replay checks


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """The suite both sides agreed, our master key + salt and the far end's."""

    suite: str
    local_key: bytes
    remote_key: bytes

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"unsupported SRTP suite {self.suite!r}")
        length = SUITES[self.suite][1]
        if len(self.local_key) != length or len(self.remote_key) != length:
            raise ValueError(f"{self.suite} needs {length}-byte keys")

    def __repr__(self) -> str:  # never print key material into a log
        return f"SrtpKeys({self.suite})"


class SrtpStreams:
    """Protects what we send with our key and checks what we receive with the far end's.

    ``update`` with new keys (a re-INVITE) keeps the stream whose key did not change: our
    send stream keeps its packet index, so a key is never used twice for one index."""

    def __init__(self, keys: SrtpKeys) -> None:
        self.keys = keys
        self._tx = self._session(keys.suite, keys.local_key, Policy.SSRC_ANY_OUTBOUND)
        self._rx = self._session(keys.suite, keys.remote_key, Policy.SSRC_ANY_INBOUND)

    @staticmethod
    def _session(suite: str, key: bytes, direction: int) -> Session:
        return Session(Policy(key=key, ssrc_type=direction, srtp_profile=SUITES[suite][0]))

    def update(self, keys: SrtpKeys) -> None:
        old = self.keys
        if (keys.suite, keys.local_key) != (old.suite, old.local_key):
            self._tx = self._session(keys.suite, keys.local_key, Policy.SSRC_ANY_OUTBOUND)
        if (keys.suite, keys.remote_key) != (old.suite, old.remote_key):
            self._rx = self._session(keys.suite, keys.remote_key, Policy.SSRC_ANY_INBOUND)
        self.keys = keys

    def protect(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def unprotect(self, packet: bytes) -> bytes:
        """The plain RTP packet; ``SrtpError`` when it fails authentication or is a replay."""
        return self._rx.unprotect(packet)
