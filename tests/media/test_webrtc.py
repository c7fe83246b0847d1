"""AgentMediaSession against a real headless Chromium (Playwright), loopback-only ICE.

The box bridges a fake customer leg playing 440 Hz to the agent session; the browser's
fake mic plays a 1000 Hz WAV. We check both directions: the browser's inbound-rtp
stats (packets and energy), and the 8 kHz frames the bridge reads from the session
(320 bytes, 1000 Hz), plus the stereo recording of the call.
"""
from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from aiohttp import web

from media.bridge import Bridge
from media.frames import FRAME_BYTES
from media.recorder import StereoWavRecorder
from media.tones import tone
from media.webrtc import AgentMediaSession, ConnectionState, SignallingError, loopback_only_ice
from tests.media.audio_asserts import peak_hz, rms, samples
from tests.support.browser import launch_chromium, write_tone_wav

CONNECT_TIMEOUT_S = 15.0  # browser ICE gathering (<= 5 s in the page) + checks + DTLS on a busy box
MEDIA_TIMEOUT_S = 10.0  # 1 s of audio each way once connected; Opus decoder warm-up included
AUDIO_FRAMES_WANTED = 50  # 1 s of non-silent browser audio through the bridge

PAGE = """<!doctype html>
<html><body><audio id="remote" autoplay></audio>
<script>
let pc = null;
function gatheringDone(pc, ms) {
  return new Promise((resolve, reject) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(() => reject(new Error('ICE gathering timed out')), ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
}
async function start(opts = {}) {
  const video = opts.video ? {width: 320, height: 240, frameRate: 15} : false;
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: video});
  pc = new RTCPeerConnection({iceServers: [], bundlePolicy: 'max-bundle'});
  stream.getTracks().forEach(t => pc.addTrack(t, stream));
  pc.ontrack = e => {
    const el = document.getElementById('remote');
    el.srcObject = e.streams[0] || new MediaStream([e.track]);
    el.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringDone(pc, 5000);
  const r = await fetch('/offer', {method: 'POST', headers: {'content-type': 'application/json'},
                                   body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
  if (!r.ok) throw new Error('offer rejected: ' + await r.text());
  await pc.setRemoteDescription(await r.json());
}
async function inboundAudio() {
  if (!pc) return null;
  let found = null;
  (await pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio')
      found = {packetsReceived: s.packetsReceived, totalAudioEnergy: s.totalAudioEnergy || 0};
  });
  return found;
}
</script></body></html>
"""

SESSION = web.AppKey("session", AgentMediaSession)


class ToneCustomer:
    """Fake customer leg: speaks 440 Hz; keeps every frame the bridge sends it."""

    def __init__(self, wanted: int) -> None:
        self._tone = tone(440.0)
        self.received: list[bytes] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    def read_frame_nowait(self) -> bytes | None:
        return self._tone.next_frame()

    def write_frame(self, pcm: bytes) -> None:
        self.received.append(pcm)
        if sum(1 for f in self.received if rms(samples(f)) > 300) >= self.wanted:
            self.enough.set()


@pytest.fixture
def loopback_ice() -> AsyncIterator[None]:
    restore = loopback_only_ice()
    yield
    restore()


async def offer_handler(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        sdp, kind = await request.app[SESSION].answer(body["sdp"], body["type"])
    except SignallingError as exc:
        return web.Response(status=400, text=str(exc))
    return web.json_response({"sdp": sdp, "type": kind})


async def page_handler(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@pytest.mark.browser
async def test_chromium_agent_leg_both_directions(tmp_path: Path, loopback_ice: None) -> None:
    states: list[ConnectionState] = []
    session = AgentMediaSession("agent:test", on_state=states.append)
    app = web.Application()
    app[SESSION] = session
    app.router.add_get("/", page_handler)
    app.router.add_post("/offer", offer_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    customer = ToneCustomer(AUDIO_FRAMES_WANTED)
    recording = tmp_path / "call.wav"
    bridge = Bridge(customer, session, StereoWavRecorder(recording), name="bridge:test")
    mic = write_tone_wav(tmp_path / "mic1k.wav", freq=1000.0, seconds=3.0)
    try:
        async with launch_chromium(fake_audio_wav=mic) as browser:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.evaluate("start()")
            await session.wait_connected(CONNECT_TIMEOUT_S)
            bridge.start()
            async with asyncio.timeout(MEDIA_TIMEOUT_S):
                await customer.enough.wait()
            # wait_for_function would not await the promise (a Promise is truthy): the page polls itself
            await page.evaluate(
                """async (timeoutMs) => {
                     const end = Date.now() + timeoutMs;
                     while (Date.now() < end) {
                       const s = await inboundAudio();
                       if (s && s.packetsReceived > 25 && s.totalAudioEnergy > 0) return;
                       await new Promise(r => setTimeout(r, 100));
                     }
                   }""",
                MEDIA_TIMEOUT_S * 1000,
            )
            browser_stats = await page.evaluate("inboundAudio()")
            bridge_stats = await bridge.stop()
            await page.close()
    finally:
        if bridge.running:
            await bridge.stop()
        await session.close()
        await runner.cleanup()

    # browser <- box: 440 Hz reached Chromium's decoder
    assert browser_stats["packetsReceived"] > 25
    assert browser_stats["totalAudioEnergy"] > 0
    # box <- browser: 8 kHz mono 20 ms frames carrying the 1000 Hz mic
    assert all(len(f) == FRAME_BYTES for f in customer.received)
    voiced = [f for f in customer.received if rms(samples(f)) > 300]
    assert len(voiced) >= AUDIO_FRAMES_WANTED
    assert peak_hz(samples(b"".join(voiced[-AUDIO_FRAMES_WANTED:]))) == pytest.approx(1000, abs=20)
    # the session's own view
    webrtc_stats = session.statistics()
    assert webrtc_stats.frames_received >= AUDIO_FRAMES_WANTED
    assert webrtc_stats.frames_sent > 25
    assert ConnectionState.CONNECTED in states and states[-1] is ConnectionState.CLOSED
    assert session.ended.is_set()
    # the recording: customer (440 Hz) left, agent (browser mic, 1000 Hz) right, aligned
    assert bridge_stats.recorder is not None and bridge_stats.recorder.finished
    with wave.open(str(recording), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    assert data.size // 2 == bridge_stats.ticks * 160
    left, right = data[0::2], data[1::2]
    assert peak_hz(left) == pytest.approx(440, abs=5)
    assert peak_hz(right[-8000:]) == pytest.approx(1000, abs=20)


@pytest.mark.browser
async def test_chromium_video_track_is_accepted_and_consumed(tmp_path: Path, loopback_ice: None) -> None:
    session = AgentMediaSession("agent:video")
    app = web.Application()
    app[SESSION] = session
    app.router.add_get("/", page_handler)
    app.router.add_post("/offer", offer_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with launch_chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.evaluate("start({video: true})")
            await session.wait_connected(CONNECT_TIMEOUT_S)
            async with asyncio.timeout(MEDIA_TIMEOUT_S):
                await session.video_received.wait()
                await session.audio_received.wait()
            await page.close()
    finally:
        await session.close()
        await runner.cleanup()
    assert session.statistics().video_frames >= 1


async def test_answer_rejects_bad_offers() -> None:
    session = AgentMediaSession("agent:bad")
    try:
        with pytest.raises(SignallingError, match="expected an SDP offer"):
            await session.answer("v=0\r\n", "answer")
        with pytest.raises(SignallingError, match="not SDP"):
            await session.answer("garbage", "offer")
    finally:
        await session.close()
    assert session.state is ConnectionState.CLOSED


async def test_answer_rejects_malformed_sdp_and_offer_without_audio() -> None:
    session = AgentMediaSession("agent:malformed")
    try:
        with pytest.raises(SignallingError):
            await session.answer("v=0\r\nm=audio notaport RTP/AVP 0\r\n", "offer")
    finally:
        await session.close()
    session = AgentMediaSession("agent:noaudio")
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AA"] * 32) + "\r\na=setup:actpass\r\na=mid:0\r\n"
        "a=sctp-port:5000\r\n"
    )
    try:
        with pytest.raises(SignallingError, match="no audio"):
            await session.answer(offer, "offer")
    finally:
        await session.close()


async def test_write_frame_queue_is_bounded_newest_kept() -> None:
    session = AgentMediaSession("agent:queue")
    try:
        for i in range(10):
            session.write_frame(bytes([i]) * FRAME_BYTES)
        stats = session.statistics()
        assert stats.outbound_dropped == 7
        assert session.read_frame_nowait() is None  # nothing received yet
    finally:
        await session.close()
    session.write_frame(bytes(FRAME_BYTES))  # after close: ignored, no error
