"""SRTP (SDES keys) on RtpSession: two sessions on 127.0.0.1 with mirrored keys, and a far end
that protects with libsrtp directly (pylibsrtp) to check the bytes on the wire."""
from __future__ import annotations

import asyncio
import audioop
import secrets
import struct

import pytest
from pylibsrtp import Policy, Session

from media.frames import FRAME_BYTES
from media.rtp import RtpSession
from media.srtp import SUITES, SrtpKeys
from tests.media.test_rtp import Peer, tone_pcm, until

SUITE_NAMES = sorted(SUITES)


async def _session(keys: SrtpKeys | None, remote_port: int = 9) -> RtpSession:
    session = RtpSession("127.0.0.1", port_range=None)
    await session.start()
    session.configure("127.0.0.1", remote_port, "PCMU", 0, 101, srtp=keys)
    return session


@pytest.mark.parametrize("suite", SUITE_NAMES)
async def test_two_sessions_with_mirrored_keys_carry_audio_and_dtmf(suite: str) -> None:
    length = SUITES[suite][1]
    a_key, b_key = secrets.token_bytes(length), secrets.token_bytes(length)
    a = await _session(SrtpKeys(suite, a_key, b_key))
    b = await _session(SrtpKeys(suite, b_key, a_key), a.local_port)
    a.configure("127.0.0.1", b.local_port, "PCMU", 0, 101, srtp=SrtpKeys(suite, a_key, b_key))
    try:
        digits: list[str] = []
        b.on_dtmf(digits.append)
        tone = tone_pcm(FRAME_BYTES // 2)
        for _ in range(5):
            a.write_frame(tone)
        assert await a.send_dtmf("7", 60)
        await until(lambda: b.statistics().received >= 5 and digits)
        frame = b.read_frame_nowait()
        assert frame is not None and audioop.rms(frame, 2) > 3000  # decrypted and decoded, not noise
        assert digits == ["7"] and b.statistics().srtp_failed == 0
    finally:
        a.close()
        b.close()


async def test_the_wire_carries_srtp_that_libsrtp_opens_and_forged_packets_are_dropped() -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    ours, theirs = secrets.token_bytes(30), secrets.token_bytes(30)
    loop = asyncio.get_running_loop()
    peer = Peer()
    transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    session = await _session(SrtpKeys(suite, ours, theirs), transport.get_extra_info("sockname")[1])
    far_rx = Session(Policy(key=ours, ssrc_type=Policy.SSRC_ANY_INBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    far_tx = Session(Policy(key=theirs, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    try:
        session.write_frame(tone_pcm(FRAME_BYTES // 2))
        wire, _ = await peer.get()
        assert len(wire) == 12 + 160 + 10  # an 80-bit authentication tag
        plain = far_rx.unprotect(wire)
        assert plain[1] & 0x7F == 0 and plain[12:] != wire[12:172]  # PCMU, and the payload was encrypted

        ours_addr = ("127.0.0.1", session.local_port)
        packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x55) + b"\x11" * 160
        sealed = far_tx.protect(packet)
        transport.sendto(sealed[:-1] + bytes([sealed[-1] ^ 1]), ours_addr)  # tag flipped: forged
        transport.sendto(packet, ours_addr)  # plain RTP on an SRTP call
        transport.sendto(sealed, ours_addr)
        transport.sendto(sealed, ours_addr)  # a replay
        await until(lambda: session.statistics().received + session.statistics().srtp_failed >= 4)
        stats = session.statistics()
        assert stats.received == 1 and stats.srtp_failed == 3 and stats.malformed == 0
    finally:
        session.close()
        transport.close()


async def test_new_far_end_key_keeps_our_send_stream() -> None:
    """A re-INVITE with a new key from the far end: our packets keep their index under our
    unchanged key (never reusing key stream), and the far end's new key opens its packets."""
    suite = "AES_CM_128_HMAC_SHA1_80"
    ours, old, new = (secrets.token_bytes(30) for _ in range(3))
    loop = asyncio.get_running_loop()
    peer = Peer()
    transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    session = await _session(SrtpKeys(suite, ours, old), port)
    far_rx = Session(Policy(key=ours, ssrc_type=Policy.SSRC_ANY_INBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    try:
        session.write_frame(tone_pcm(FRAME_BYTES // 2))
        far_rx.unprotect((await peer.get())[0])
        session.configure("127.0.0.1", port, "PCMU", 0, 101, srtp=SrtpKeys(suite, ours, new))
        session.write_frame(tone_pcm(FRAME_BYTES // 2))
        far_rx.unprotect((await peer.get())[0])  # the same stream continues: opens under our key

        far_tx = Session(Policy(key=new, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                                srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
        packet = struct.pack("!BBHII", 0x80, 0, 9, 1440, 0x66) + b"\x22" * 160
        transport.sendto(far_tx.protect(packet), ("127.0.0.1", session.local_port))
        await until(lambda: session.statistics().received >= 1)
        assert session.statistics().srtp_failed == 0
    finally:
        session.close()
        transport.close()


def test_keys_refuse_wrong_lengths_and_never_print_key_material() -> None:
    with pytest.raises(ValueError, match="30-byte keys"):
        SrtpKeys("AES_CM_128_HMAC_SHA1_80", bytes(30), bytes(29))
    with pytest.raises(ValueError, match="unsupported"):
        SrtpKeys("F8_128_HMAC_SHA1_80", bytes(30), bytes(30))
    keys = SrtpKeys("AEAD_AES_256_GCM", b"\x01" * 44, b"\x02" * 44)
    assert repr(keys) == "SrtpKeys(AEAD_AES_256_GCM)"
