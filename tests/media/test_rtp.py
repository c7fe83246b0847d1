"""RtpSession over real UDP sockets on 127.0.0.1, and the RFC 4733 codec."""
from __future__ import annotations

import asyncio
import audioop
import dataclasses
import struct

import numpy as np
import pytest
import uvloop
from aiortc.rtp import RtpPacket

from media.frames import FRAME_BYTES
from media.rfc4733 import DtmfReceiver, MalformedEvent, encode_event, event_packets, parse_event
from media.rtp import RtpSession

WAIT_S = 3.0


def rtp(pt: int, seq: int, ts: int, payload: bytes, marker: int = 0, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, (marker << 7) | pt, seq, ts, ssrc) + payload


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(maxsize=500)

    def datagram_received(self, data, addr) -> None:
        if not self.packets.full():
            self.packets.put_nowait((data, asyncio.get_running_loop().time()))

    async def get(self) -> tuple[bytes, float]:
        async with asyncio.timeout(WAIT_S):
            return await self.packets.get()


@pytest.fixture
async def pair():
    loop = asyncio.get_running_loop()
    session = RtpSession("127.0.0.1", port_range=None)
    await session.start()
    peer = Peer()
    transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    stranger, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    peer_port = transport.get_extra_info("sockname")[1]
    yield session, transport, peer, peer_port, stranger
    session.close()
    transport.close()
    stranger.close()


async def until(predicate) -> None:
    """Wait (bounded) for a counter fed by the socket to reach a value."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.005)


def tone_pcm(samples: int, freq: float = 440.0, amp: int = 6000) -> bytes:
    t = np.arange(samples)
    return (amp * np.sin(2 * np.pi * freq * t / 8000)).astype("<i2").tobytes()


async def test_port_range_gives_even_port() -> None:
    s = RtpSession("127.0.0.1", port_range=(30000, 30100))
    try:
        port = await s.start()
        assert 30000 <= port < 30100 and port % 2 == 0
    finally:
        s.close()


async def test_receive_30ms_packets_as_20ms_frames(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMA", 8, 101)
    pcm = tone_pcm(240 * 3)
    for i in range(3):
        transport.sendto(rtp(8, 100 + i, i * 240, audioop.lin2alaw(pcm[i * 480:(i + 1) * 480], 2)),
                         ("127.0.0.1", session.local_port))
    await until(lambda: session.statistics().received == 3)
    frames = []
    while (f := session.read_frame_nowait()) is not None:
        frames.append(f)
    assert len(frames) == 4 and all(len(f) == FRAME_BYTES for f in frames)
    got = np.frombuffer(b"".join(frames), "<i2").astype(float)
    want = np.frombuffer(pcm[: 4 * FRAME_BYTES], "<i2").astype(float)
    assert np.max(np.abs(got - want)) < 400  # A-law quantisation


async def test_filters_source_pt_malformed_and_late(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMU", 0, 101)
    dest = ("127.0.0.1", session.local_port)
    payload = b"\x7f" * 160
    stranger.sendto(rtp(0, 1, 0, payload), dest)  # wrong source
    transport.sendto(rtp(8, 2, 0, payload), dest)  # PT not negotiated
    transport.sendto(b"\x80\x00", dest)  # too short
    transport.sendto(b"\x40" + rtp(0, 3, 0, payload)[1:], dest)  # RTP version 1
    transport.sendto(rtp(101, 4, 0, b"\x01"), dest)  # truncated telephone-event
    transport.sendto(rtp(0, 10, 0, payload), dest)  # good
    transport.sendto(rtp(0, 10, 0, payload), dest)  # duplicate
    transport.sendto(rtp(0, 9, 0, payload), dest)  # late
    transport.sendto(rtp(0, 11, 160, payload), dest)  # good
    await until(lambda: session.statistics().received == 2 and session.statistics().late == 2)
    s = session.statistics()
    assert (s.dropped_source, s.dropped_pt, s.malformed, s.late) == (1, 1, 3, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.received = 5  # type: ignore[misc]


async def test_latching_only_when_configured_and_only_early(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    latched = RtpSession("127.0.0.1", port_range=None, latching=True)
    await latched.start()
    try:
        latched.configure("127.0.0.1", 9, "PCMU", 0)  # SDP said port 9; media comes from elsewhere (NAT)
        transport.sendto(rtp(0, 1, 0, b"\xff" * 160), ("127.0.0.1", latched.local_port))
        await until(lambda: latched.statistics().received == 1)
        latched.write_frame(bytes(FRAME_BYTES))
        data, _ = await peer.get()  # we now send to where the media came from
        assert data[1] & 0x7F == 0
        for i in range(12):
            transport.sendto(rtp(0, 2 + i, 0, b"\xff" * 160), ("127.0.0.1", latched.local_port))
        await until(lambda: latched.statistics().received == 13)
        stranger.sendto(rtp(0, 50, 0, b"\xff" * 160), ("127.0.0.1", latched.local_port))
        await until(lambda: latched.statistics().dropped_source == 1)  # window over: no re-latch
    finally:
        latched.close()


async def test_write_frame_packets(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMU", 0)
    pcm = tone_pcm(160 * 3)
    for i in range(3):
        session.write_frame(pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES])
    session.write_frame(b"short")  # not a frame: not sent
    packets = [(await peer.get())[0] for _ in range(3)]
    heads = [struct.unpack("!BBHII", p[:12]) for p in packets]
    parsed = RtpPacket.parse(packets[0])
    assert (parsed.version, parsed.marker, parsed.payload_type, len(parsed.payload)) == (2, 1, 0, 160)
    assert [h[1] >> 7 for h in heads] == [1, 0, 0]  # marker on the first packet only
    assert {h[1] & 0x7F for h in heads} == {0}
    assert [(h[2] - heads[0][2]) & 0xFFFF for h in heads] == [0, 1, 2]
    assert [(h[3] - heads[0][3]) & 0xFFFFFFFF for h in heads] == [0, 160, 320]
    assert len({h[4] for h in heads}) == 1
    decoded = b"".join(audioop.ulaw2lin(p[12:], 2) for p in packets)
    diff = np.abs(np.frombuffer(decoded, "<i2").astype(float) - np.frombuffer(pcm, "<i2").astype(float))
    assert diff.max() < 300
    s = session.statistics()
    assert s.sent == 3 and s.not_sent == 1


async def test_hold_means_no_sending(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMU", 0, send=False)
    session.write_frame(bytes(FRAME_BYTES))
    assert session.statistics().sent == 0 and session.statistics().not_sent == 1


async def test_dtmf_receive_once_per_event(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMU", 0, 101)
    digits: list[str] = []
    session.on_dtmf(digits.append)
    dest = ("127.0.0.1", session.local_port)
    for seq, (marker, payload) in enumerate(event_packets("7", 100)):
        transport.sendto(rtp(101, seq, 8000, payload, int(marker)), dest)
    for seq, (marker, payload) in enumerate(event_packets("*", 60), start=20):
        transport.sendto(rtp(101, seq, 9600, payload, int(marker)), dest)
    await until(lambda: session.statistics().dtmf == 2 and len(digits) == 2)
    assert digits == ["7", "*"]


async def test_dtmf_send_paced_with_marker_and_three_ends(pair) -> None:
    session, transport, peer, peer_port, stranger = pair
    session.configure("127.0.0.1", peer_port, "PCMU", 0, 101)
    assert await session.send_dtmf("9", 100)
    got = [await peer.get() for _ in range(7)]
    heads = [struct.unpack("!BBHII", d[:12]) for d, _ in got]
    events = [parse_event(d[12:]) for d, _ in got]
    assert [h[1] >> 7 for h in heads] == [1, 0, 0, 0, 0, 0, 0]
    assert {h[1] & 0x7F for h in heads} == {101}
    assert len({h[3] for h in heads}) == 1  # one timestamp for the event
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.digit for e in events} == {"9"} and events[-1].duration == 800
    span = got[-1][1] - got[0][1]
    assert 0.09 <= span <= 0.5  # six 20 ms steps, paced
    session.write_frame(bytes(FRAME_BYTES))
    after = struct.unpack("!BBHII", (await peer.get())[0][:12])
    assert (after[3] - heads[0][3]) & 0xFFFFFFFF >= 800  # audio clock moved past the event


def test_rfc4733_codec() -> None:
    assert parse_event(encode_event("#", end=True, duration=400, volume=10)) == parse_event(b"\x0b\x8a\x01\x90")
    e = parse_event(b"\x0b\x8a\x01\x90")
    assert (e.digit, e.end, e.volume, e.duration) == ("#", True, 10, 400)
    with pytest.raises(MalformedEvent):
        parse_event(b"\x01\x02")
    with pytest.raises(MalformedEvent):
        parse_event(b"\x40\x80\x00\x10")  # event 64 is not DTMF
    rx = DtmfReceiver()
    assert rx.feed(100, encode_event("1", end=False, duration=160)) == "1"
    assert rx.feed(100, encode_event("1", end=True, duration=800)) is None
    assert rx.feed(100, encode_event("1", end=True, duration=800)) is None
    assert rx.feed(900, encode_event("1", end=True, duration=800)) == "1"  # a new press of the same key
    packets = event_packets("5", 100)
    assert [m for m, _ in packets] == [True] + [False] * 6
    assert packets[-1][1] == packets[-2][1] == packets[-3][1]


@pytest.mark.parametrize("port_range", [(30001, 30001), (30002, 30002), (30000, 20000)])
async def test_a_range_without_an_even_port_is_a_clear_oserror(port_range: tuple[int, int]) -> None:
    s = RtpSession("127.0.0.1", port_range=port_range)
    with pytest.raises(OSError, match="holds no even port"):  # the line turns the call away, no crash
        await s.start()


async def _send_to_the_other_family() -> tuple[int, int]:
    session = RtpSession("127.0.0.1", port_range=None)
    await session.start()
    try:
        session.configure("2001:db8::5", 40000, "PCMU", 0)  # an IPv4 socket cannot send there
        session.write_frame(bytes(FRAME_BYTES))
        stats = session.statistics()
        return stats.sent, stats.not_sent
    finally:
        session.close()


def test_a_remote_address_of_the_other_family_is_counted_never_raised_under_uvloop() -> None:
    """uvloop (the production loop) raises ValueError from sendto for such an address."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(_send_to_the_other_family()) == (0, 1)
