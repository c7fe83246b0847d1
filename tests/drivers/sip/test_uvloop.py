"""The SIP line and RTP session under uvloop (the production loop): UDP, TCP and media."""
from __future__ import annotations

import asyncio
import struct

import uvloop

from appliance.lines import HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import parse_message
from drivers.sip.sdp import negotiate, parse_sdp
from tests.drivers.sip.peer import RtpPort, SipPeer, new_branch, new_call_id, offer_sdp

WAIT_S = 3.0


async def _scenario() -> None:
    calls: asyncio.Queue = asyncio.Queue(maxsize=4)

    async def handler(call) -> None:
        calls.put_nowait(call)
        await call.answer()
        await call.wait_ended()

    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None), handler)
    await line.start()
    peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
    rtp_t = await RtpPort.open(maxsize=10)
    try:
        peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        await peer.expect(200)

        reader, writer = await asyncio.open_connection("127.0.0.1", line.tcp_port)
        req = peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()).replace("/UDP", "/TCP")
        writer.write(req.encode())
        async with asyncio.timeout(WAIT_S):
            assert parse_message(await reader.readuntil(b"\r\n\r\n"), stream=True).status == 200
        writer.close()
        await writer.wait_closed()

        call_id = new_call_id()
        peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, body=offer_sdp(rtp_t.port, "0")))
        await peer.expect(100)
        ok = await peer.expect(200)
        peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
        async with asyncio.timeout(WAIT_S):
            call = await calls.get()
        neg = negotiate(parse_sdp(ok.body))
        assert neg.codec == "PCMU"
        rtp_t.sendto(struct.pack("!BBHII", 0x80, 0, 1, 0, 7) + b"\x00" * 160, (neg.remote_host, neg.remote_port))
        call.audio.write_frame(bytes(320))
        assert len(await rtp_t.next_packet()) == 172
        async with asyncio.timeout(WAIT_S):
            while call.audio.statistics().received < 1:
                await asyncio.sleep(0.005)  # bounded poll of a socket-fed counter
        peer.send(peer.request("BYE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag))
        await peer.expect(200)
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP
    finally:
        rtp_t.close()
        peer.close()
        await line.stop()


def test_line_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(_scenario())
