"""Session-level behaviour: keepalive timeout restarts, +CMT direct delivery, WAV audio."""
import asyncio
import wave

import pytest

from drivers.at.errors import AtTimeout
from drivers.gsm import modem as modem_mod
from drivers.gsm.events import SmsReceived
from drivers.gsm import pdu
from datetime import datetime, timezone


async def test_keepalive_timeout_ends_the_session(sims, attach, monkeypatch):
    monkeypatch.setattr(modem_mod, "KEEPALIVE_S", 0.05)
    monkeypatch.setattr(modem_mod, "KEEPALIVE_TIMEOUT_S", 0.1)
    sim = sims("generic")
    sim.script("AT", [])  # the modem stops answering
    async with attach(sim) as (m, _):
        with pytest.raises(AtTimeout):
            async with asyncio.timeout(3):
                await m.serve()
        assert m.ch.needs_resync


async def test_cmt_direct_delivery_is_persisted(sims, attach):
    sim = sims("generic")
    saved = []

    async def persist(ev):
        saved.append(ev)

    body = pdu.encode_deliver("+447700900123", "direct", datetime(2024, 5, 1, tzinfo=timezone.utc))
    async with attach(sim, serve=True, persist=persist) as (m, events):
        sim.send(f"\r\n+CMT: ,{body.tpdu_length}\r\n{body.hex}\r\n".encode())
        [ev] = await events.wait_for(SmsReceived)
    assert ev.text == "direct" and saved == [ev]
    assert not any(c.startswith("AT+CMGD") for c in sim.received)  # nothing stored, nothing deleted


async def test_wav_file_is_the_callers_audio(sims, attach, tmp_path):
    path = tmp_path / "caller.wav"
    pcm = bytes(range(256)) * 5  # 1280 bytes = 4 frames
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(pcm)
    sim = sims("quectel")
    sim.load_wav(str(path))
    calls = []
    got = asyncio.Event()
    async with attach(sim, on_incoming=lambda c: (calls.append(c), got.set())) as (m, _):
        sim.place_call("+447700900123")
        async with asyncio.timeout(3):
            await got.wait()
        await calls[0].answer()
        frames = []
        async with asyncio.timeout(3):
            while len(frames) < 4:
                f = calls[0].audio.read_frame_nowait()
                if f is None:
                    calls[0].audio.arrived.clear()
                    await calls[0].audio.arrived.wait()
                else:
                    frames.append(f)
    assert all(len(f) == 320 for f in frames)
    assert b"".join(frames) in pcm * 3  # a contiguous stretch of the looped WAV, in order


async def test_caller_abandons_without_urc_found_by_clcc(sims, attach, monkeypatch):
    from appliance.lines import HangupCause

    monkeypatch.setattr(modem_mod, "RING_GONE_S", 0.1)
    sim = sims("generic")
    calls, got = [], asyncio.Event()
    async with attach(sim, serve=True, on_incoming=lambda c: (calls.append(c), got.set())) as (m, events):
        sim.place_call("+447700900123")
        async with asyncio.timeout(3):
            await got.wait()
        sim.model.call = None  # network stops alerting: rings just stop, no URC
        async with asyncio.timeout(3):
            assert await calls[0].wait_ended() is HangupCause.CANCELLED
    assert "AT+CLCC" in sim.received


async def test_local_hangup_sends_profile_command(sims, attach):
    from appliance.lines import HangupCause

    sim = sims("simcom")
    calls, got = [], asyncio.Event()
    async with attach(sim, on_incoming=lambda c: (calls.append(c), got.set())) as (m, _):
        sim.place_call("+447700900123")
        async with asyncio.timeout(3):
            await got.wait()
        call = calls[0]
        await call.progress()  # no-op: the network plays ringback
        await call.answer()
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        await call.hangup(HangupCause.AGENT_HUNG_UP)  # idempotent
        async with asyncio.timeout(3):
            assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP
        await sim.wait_received("AT+CPCMREG=0")
    assert sim.received.count("AT+CHUP") == 1


async def test_huawei_noise_until_curc_off_and_inband_dtmf_hook(sims, attach, monkeypatch):
    from drivers.gsm.events import SignalChanged
    from drivers.sim import gsm as simgsm

    monkeypatch.setattr(simgsm, "NOISE_EVERY_S", 0.01)
    sim = sims("huawei", noise=True)
    calls, got = [], asyncio.Event()
    async with attach(sim, echo=True, on_incoming=lambda c: (calls.append(c), got.set())) as (m, events):
        await events.wait_for(SignalChanged)  # ^RSSI noise before init
        await m.initialise()
        assert "AT^CURC=0" in sim.received and not sim.model.curc
        sim.place_call("+447700900123")
        async with asyncio.timeout(3):
            await got.wait()
        call = calls[0]
        assert call.inband_dtmf  # Huawei has no DTMF URC: media/dtmf runs on the call audio
        digits = []
        call.on_dtmf(digits.append)
        call.deliver_dtmf("7")
        assert digits == ["7"]


async def test_huawei_inband_dtmf_detected_in_pcm(sims, attach):
    from media.dtmf import dtmf_pcm

    sim = sims("huawei")
    sim.pcm_source = dtmf_pcm("5#") + bytes(3200)
    calls, got = [], asyncio.Event()
    async with attach(sim, on_incoming=lambda c: (calls.append(c), got.set())) as (m, events):
        sim.place_call("+447700900123")
        async with asyncio.timeout(3):
            await got.wait()
        call = calls[0]
        digits, heard = [], asyncio.Event()
        call.on_dtmf(lambda d: (digits.append(d), heard.set()))
        await call.answer()
        async with asyncio.timeout(5):
            while not {"5", "#"} <= set(digits):
                heard.clear()
                await heard.wait()
    # the WAV loops: whichever tone the call audio opened on, the keys alternate 5, #, 5 ...
    assert all(a != b for a, b in zip(digits, digits[1:])) and set(digits) == {"5", "#"}
