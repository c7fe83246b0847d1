"""Sending DTMF to a SIP caller: RFC 4733 when negotiated, in-band tones otherwise (SipLine level)."""
from __future__ import annotations

import asyncio
import audioop

from aiortc.rtp import RtpPacket

from drivers.sip.line import SipLine, SipLineConfig
from media.dtmf import DtmfDetector
from media.frames import FRAME_S
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id, offer_sdp

WAIT_S = 3.0
DIGITS = "5#"


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr) -> None:
        self.packets.append(RtpPacket.parse(data))
        self.changed.set()


class _Handler:
    def __init__(self) -> None:
        self.arrived: asyncio.Queue = asyncio.Queue(maxsize=4)

    async def __call__(self, call) -> None:
        self.arrived.put_nowait(call)
        await call.wait_ended()


async def _call_with(pts: str, direction: str | None = None):
    handler = _Handler()
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None), handler)
    await line.start()
    peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
    rtp = _Rtp()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: rtp,
                                                                             local_addr=("127.0.0.1", 0))
    call_id = new_call_id()
    body = offer_sdp(transport.get_extra_info("sockname")[1], pts=pts, direction=direction)
    peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, body=body))
    await peer.expect(100)
    async with asyncio.timeout(WAIT_S):
        call = await handler.arrived.get()
    await call.answer()
    ok = await peer.expect(200)
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
    return line, peer, transport, rtp, call


async def _bridge_talking(call, stop: asyncio.Event) -> None:
    """Stands in for the bridge: a loud non-DTMF frame every 20 ms, for as long as the test runs."""
    loop = asyncio.get_running_loop()
    start, tick = loop.time(), 0
    voice = (b"\x00\x30\x00\xd0" * 80)  # a 4 kHz-ish square: loud, never a DTMF pair
    while not stop.is_set():
        call.audio.write_frame(voice)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * FRAME_S - loop.time()))


async def test_inband_tones_when_the_caller_has_no_telephone_event() -> None:
    line, peer, transport, rtp, call = await _call_with("8")  # PCMA only: no RFC 4733
    stop = asyncio.Event()
    bridge = asyncio.create_task(_bridge_talking(call, stop), name="test-bridge")
    try:
        async with asyncio.timeout(WAIT_S):
            while not rtp.packets:  # the bridge's audio flows
                rtp.changed.clear()
                await rtp.changed.wait()
        before = len(rtp.packets)
        for digit in DIGITS:
            assert await call.send_dtmf(digit, 100)
        during = len(rtp.packets) - before
        stop.set()
        await bridge
        assert call.audio.held_back >= 14  # the bridge's frames were replaced, not interleaved
        assert not call.audio.playing
    finally:
        stop.set()
        await line.stop()
        peer.close()
        transport.close()
    packets = rtp.packets
    assert {p.payload_type for p in packets} == {8}  # audio only, no telephone-event packets
    assert len({p.ssrc for p in packets}) == 1
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:])}
    assert steps == {160}  # one 20 ms clock: no doubled packets during the digits
    assert 14 <= during <= 20  # two digits of 8 frames each (100 ms tone + 60 ms gap), +-jitter
    pcm = b"".join(audioop.alaw2lin(p.payload, 2) for p in packets)
    assert DtmfDetector().feed(pcm) == list(DIGITS)


async def test_rfc4733_when_negotiated_and_nothing_while_held() -> None:
    line, peer, transport, rtp, call = await _call_with("8 101")
    try:
        assert await call.send_dtmf("7", 60)
        async with asyncio.timeout(WAIT_S):
            while not any(p.payload_type == 101 and p.payload[1] & 0x80 for p in rtp.packets):
                rtp.changed.clear()
                await rtp.changed.wait()
        events = [p for p in rtp.packets if p.payload_type == 101]
        assert {p.payload[0] for p in events} == {7} and events[0].marker
        assert call.audio.held_back == 0  # RFC 4733 gates inside the RTP session, not here
    finally:
        await line.stop()
        peer.close()
        transport.close()


async def test_no_inband_digit_to_a_caller_who_holds_us() -> None:
    line, peer, transport, rtp, call = await _call_with("8", direction="sendonly")  # caller only sends
    try:
        assert not await call.send_dtmf("1")
        assert rtp.packets == []
    finally:
        await line.stop()
        peer.close()
        transport.close()
