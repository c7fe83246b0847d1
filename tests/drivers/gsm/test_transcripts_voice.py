"""transcripts.md cases 20, 21, 24, 26, 27, 29, 30 (USSD, calls, audio, DTMF) over ptys."""
import asyncio
import math
import struct
from dataclasses import replace

import pytest

from appliance.lines import HangupCause
from drivers.gsm import setup
from drivers.gsm.calls import CallState
from drivers.gsm.events import DtmfReceived, MissedCall
from drivers.gsm.profiles import GENERIC, HUAWEI

CALL_WAIT_S = 3.0


def tone_pcm(frames: int, hz: float = 440.0) -> bytes:
    n = frames * 160
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * hz * i / 8000)) for i in range(n)))


class Offers:
    def __init__(self) -> None:
        self.calls = []
        self.event = asyncio.Event()

    def __call__(self, call) -> None:
        self.calls.append(call)
        self.event.set()

    async def first(self):
        async with asyncio.timeout(CALL_WAIT_S):
            while not self.calls:
                self.event.clear()
                await self.event.wait()
        return self.calls[0]


async def read_frames(audio, n: int) -> list[bytes]:
    frames: list[bytes] = []
    async with asyncio.timeout(3):
        while len(frames) < n:
            f = audio.read_frame_nowait()
            if f is None:
                audio.arrived.clear()
                await audio.arrived.wait()
                continue
            frames.append(f)
    return frames


async def test_case20_ussd_ucs2_reply_with_huawei_noise(sims, attach):
    sim = sims("huawei")
    sim.script('AT+CUSD=1,"AA180C3602",15', [
        b'AT+CUSD=1,"AA180C3602",15\r',
        b'\r\n^CCIN:2,0,"","",0\r\n',
        b"\r\nOK\r\n",
        b"\r\n^MODE: 5,4\r\n",
        b'\r\n^RSSI: 15\r\n\r\n^HCSQ:"WCDMA",43,39,57\r\n',
        b'\r\n+CUSD: 0,"04110430043B0430043D0441003A0032003200320030002C003700360440",72\r\n',
    ])
    async with attach(sim) as (m, _):
        reply = await m.ussd("*100#")
    assert (reply.status, reply.text, reply.dcs) == (0, "Баланс:2220,76р", 72)


async def test_case21_plain_ussd_rejected_then_packed(sims, attach):
    sim = sims("huawei")
    sim.script('AT+CUSD=1,"*105#",15', [b"\r\nERROR\r\n"])
    sim.script('AT+CUSD=1,"AA18AC3602",15', [b"\r\nOK\r\n", b'\r\n+CUSD: 0,"CF2135487D2E4131DCCD25A381E02E",15\r\n'])
    async with attach(sim, profile=replace(HUAWEI, ussd_packed=False)) as (m, _):
        reply = await m.ussd("*105#")
        assert sim.received == ['AT+CUSD=1,"*105#",15', 'AT+CUSD=1,"AA18AC3602",15']
    assert (reply.status, reply.text) == (0, "OCTATOK 187.24 p.")


async def test_ussd_menu_reply_spanning_lines(sims, attach):
    sim = sims("generic")
    sim.script('AT+CUSD=1,"*100#",15', [b'\r\nOK\r\n\r\n+CUSD: 1,"Menu\n1 Balance\n2 Data",15\r\n'])
    async with attach(sim) as (m, _):
        reply = await m.ussd("*100#")
    assert (reply.status, reply.text) == (1, "Menu\n1 Balance\n2 Data")


async def test_case24_caller_gives_up_before_answer(sims, attach):
    sim = sims("huawei")
    offers = Offers()
    async with attach(sim, on_incoming=offers) as (m, events):
        sim.send(b'\r\n+CRING: VOICE\r\n\r\n+CLIP: "+1234567890",145,,,,0\r\n')
        call = await offers.first()
        assert call.caller.number == "+1234567890" and call.caller.presentation == "available"
        assert call.state is CallState.RINGING
        sim.send(b'\r\n+CRING: VOICE\r\n\r\n+CLIP: "+1234567890",145,,,,0\r\n')
        sim.script("AT+CLCC", [b"\r\nOK\r\n"])
        sim.send(b"\r\n^CEND:1,0,104,16\r\n")
        async with asyncio.timeout(CALL_WAIT_S):
            cause = await call.wait_ended()
        await sim.wait_received("AT+CLCC")  # the empty list confirms the missed call
    assert len(offers.calls) == 1  # the second +CRING/+CLIP did not create another call
    assert cause is HangupCause.CANCELLED and "cause 16" in call.end_detail
    [missed] = events.of(MissedCall)
    assert missed.caller == "+1234567890"


@pytest.mark.parametrize("clip,presentation", [
    (b'\r\n+CLIP: "",128,"",0,"",1\r\n', "withheld"),
    (b'\r\n+CLIP: "",128,"",0,"",2\r\n', "unavailable"),
])
async def test_withheld_and_unavailable_caller(sims, attach, clip, presentation):
    sim = sims("generic")
    offers = Offers()
    async with attach(sim, on_incoming=offers) as (m, _):
        sim.send(b"\r\nRING\r\n" + clip)
        call = await offers.first()
    assert call.caller.number is None and call.caller.presentation == presentation


async def test_case26_huawei_answer_conn_before_ok_and_pcm_port(sims, attach):
    sim = sims("huawei")
    sim.pcm_source = tone_pcm(50)
    offers = Offers()
    sim.script("AT^CVOICE?", [b"\r\n^CVOICE:0,8000,16,20\r\n\r\nOK\r\n"])
    sim.script("AT+CHLD=2", [b"\r\n^CONN:1,0\r\n\r\nOK\r\n"])
    sim.script("AT^DDSETEX=2", [b"\r\nOK\r\n"])
    async with attach(sim, profile=replace(HUAWEI, answer="AT+CHLD=2"), on_incoming=offers) as (m, _):
        assert await setup.voice_supported(m.ch, m.profile)
        sim.model.incoming_call("+447700900123", 0)
        sim.send(b'\r\nRING\r\n\r\n+CLIP: "+447700900123",145,,,,0\r\n')
        call = await offers.first()
        await call.answer()
        assert call.state is CallState.ACTIVE
        await sim.wait_received("AT^DDSETEX=2")
        async with asyncio.timeout(CALL_WAIT_S):
            while not m.audio.enabled:  # enabled only once ^DDSETEX=2 answered OK
                m.audio.arrived.clear()
                sim.start_audio()
                await m.audio.arrived.wait()
        frames = await read_frames(call.audio, 5)
        assert all(len(f) == 320 for f in frames)
        assert any(f != bytes(320) for f in frames)  # the caller's tone, not silence
        assert b"".join(frames) in sim.pcm_source * 2
        for _ in range(3):
            call.audio.write_frame(b"\x01\x02" * 160)
        uplink = await sim.wait_audio(960)
        assert uplink[:960] == b"\x01\x02" * 480
        sim.send(b"\r\n^CEND:1,65,104,16\r\n")
        async with asyncio.timeout(CALL_WAIT_S):
            cause = await call.wait_ended()
    assert cause is HangupCause.CALLER_HUNG_UP and call.duration_s == 65
    assert call.history == [CallState.RINGING, CallState.ACTIVE, CallState.IDLE]
    assert sim.received[:3] == ["AT^CVOICE?", "AT+CHLD=2", "AT^DDSETEX=2"]


async def test_case26_negative_voice_locked_firmware(sims, attach, caplog):
    sim = sims("huawei")
    offers = Offers()
    sim.script("AT^DDSETEX=2", [b"\r\nERROR\r\n"])
    async with attach(sim, on_incoming=offers) as (m, _):
        sim.model.incoming_call("+447700900123", 0)
        sim.ring()
        call = await offers.first()
        await call.answer()
        async with asyncio.timeout(CALL_WAIT_S):
            cause = await call.wait_ended()
        await sim.wait_received("AT+CHUP")
    assert cause is HangupCause.ERROR and not m.audio.enabled
    assert any("modem has no voice" in r.message for r in caplog.records)


async def test_case27_huawei_outgoing_progress_and_dtmf(sims, attach):
    sim = sims("huawei")
    sim.script("ATD+447700900123;", [b"\r\nOK\r\n", b"\r\n^ORIG:1,0\r\n", b"\r\n^CONF:1\r\n"])
    sim.script("AT^DTMF=1,5", [b"\r\nOK\r\n"])
    async with attach(sim) as (m, _):
        call = await m.dial("+447700900123")
        assert call.state is not CallState.ACTIVE  # ATD's OK is not "answered"
        await call.wait_state(CallState.ALERTING, CALL_WAIT_S)
        sim.send(b"\r\n^CONN:1,0\r\n")
        await call.wait_state(CallState.ACTIVE, CALL_WAIT_S)
        await call.send_dtmf("5")
        sim.send(b"\r\n^CEND:1,5,29,16\r\n")
        async with asyncio.timeout(CALL_WAIT_S):
            cause = await call.wait_ended()
    assert call.history == [CallState.DIALING, CallState.ALERTING, CallState.ACTIVE, CallState.IDLE]
    assert cause is HangupCause.FAR_END_HUNG_UP and call.duration_s == 5 and "normal clearing" in call.end_detail
    assert "AT^DTMF=1,5" in sim.received


async def test_case27_busy_never_becomes_active(sims, attach):
    sim = sims("huawei")
    sim.script("ATD+447700900124;", [b"\r\nOK\r\n", b"\r\n^ORIG:1,0\r\n"])
    async with attach(sim) as (m, _):
        call = await m.dial("+447700900124")
        sim.send(b"\r\n^CEND:1,0,104,17\r\n")
        async with asyncio.timeout(CALL_WAIT_S):
            cause = await call.wait_ended()
    assert cause is HangupCause.REJECTED and "user busy" in call.end_detail
    assert CallState.ACTIVE not in call.history


async def test_generic_outgoing_learns_progress_from_clcc(sims, attach):
    sim = sims("generic")
    async with attach(sim, serve=True) as (m, _):
        call = await m.dial("+447700900123")
        sim.model.call.state = "alerting"
        await call.wait_state(CallState.ALERTING, CALL_WAIT_S)
        sim.remote_answers()
        await call.wait_state(CallState.ACTIVE, CALL_WAIT_S)
        sim.caller_hangs_up()  # NO CARRIER
        async with asyncio.timeout(CALL_WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP


async def test_case29_dtmf_probe_and_receive(sims, attach):
    sim = sims("generic")
    sim.script("AT^DTMF=?", [b"\r\n+CME ERROR: 100\r\n"])
    sim.script("AT+VTS=?", [b"\r\n+VTS: (0-9,*,#,A,B,C,D),(1-255)\r\n\r\nOK\r\n"])
    sim.script("AT+DDET=1,0,1,1", [b"\r\nOK\r\n"])
    sim.script('AT+VTS="1"', [b"\r\nOK\r\n"])
    offers = Offers()
    prof = replace(GENERIC, dtmf_detect_on=("AT+DDET=1,0,1,1",))
    async with attach(sim, profile=prof, on_incoming=offers) as (m, events):
        assert await m.probe_dtmf() == 'AT+VTS="{digit}"'
        await m.ch.command("AT+DDET=1,0,1,1")
        sim.place_call("+447700900123")
        call = await offers.first()
        await call.answer()
        digits: list[str] = []
        call.on_dtmf(digits.append)
        await call.send_dtmf("1")
        sim.send(b"\r\n+DTMF: 1,40\r\n")
        sim.send(b"\r\n+DTMF: *,200\r\n")
        sim.send(b"\r\n+DTMF: #,300\r\n")
        got = await events.wait_for(DtmfReceived, 3)
    assert [(d.digit, d.duration_ms) for d in got] == [("1", 40), ("*", 200), ("#", 300)]
    assert digits == ["1", "*", "#"]
    assert sim.received[:4] == ["AT^DTMF=?", "AT+VTS=?", "AT+DDET=1,0,1,1", "ATA"]


async def test_case30_simcom_pcm_and_degraded_second_call(sims, attach):
    sim = sims("simcom")
    sim.pcm_source = tone_pcm(20)
    offers = Offers()
    sim.script("ATA", [b"\r\nOK\r\n", b"\r\nVOICE CALL: BEGIN\r\n"])
    sim.script("AT+CPCMREG=1", [b"\r\nOK\r\n"])
    sim.script("AT+CPCMREG=0", [b"\r\nOK\r\n"])
    async with attach(sim, on_incoming=offers) as (m, _):
        sim.send(b'\r\nRING\r\n\r\n+CLIP: "+447700900123",145,"",0,"",0\r\n')
        call = await offers.first()
        await call.answer()
        await sim.wait_received("AT+CPCMREG=1")
        sim.start_audio()
        frames = await read_frames(call.audio, 3)
        assert all(len(f) == 320 for f in frames)
        sim.stop_audio()
        sim.send(b"\r\nVOICE CALL: END: 000030\r\n\r\nNO CARRIER\r\n")
        async with asyncio.timeout(CALL_WAIT_S):
            assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP
        assert call.duration_s == 30
        await sim.wait_received("AT+CPCMREG=0")
        # --- next call: the USB audio endpoint is degraded, the first CPCMREG=1 fails
        offers.calls.clear()
        sim.script("ATA", [b"\r\nOK\r\n\r\nVOICE CALL: BEGIN\r\n"])
        sim.script("AT+CPCMREG=1", [b"\r\nERROR\r\n"])
        sim.script("AT+CPCMREG=1", [b"\r\nOK\r\n"])
        sim.send(b"\r\nRING\r\n")
        sim.send(b'\r\n+CLIP: "+447700900123",145,"",0,"",0\r\n')
        call2 = await offers.first()
        await call2.answer()
        await sim.wait_received("AT+CPCMREG=1", count=3)
        async with asyncio.timeout(CALL_WAIT_S):
            while not m.audio.enabled:
                m.audio.arrived.clear()
                sim.start_audio()
                await m.audio.arrived.wait()
        assert call2.state is CallState.ACTIVE


async def test_ussd_reply_before_ok_and_extra_release(sims, attach):
    sim = sims("generic")
    sim.script('AT+CUSD=1,"*101#",15', [b'\r\n+CUSD: 0,"Early bird",15\r\n\r\nOK\r\n'])
    sim.script('AT+CUSD=1,"*102#",15', [b'\r\nOK\r\n\r\n+CUSD: 2,"Initiating Release",15\r\n',
                                         b'\r\n+CUSD: 0,"Your balance is 5.00",15\r\n'])
    async with attach(sim) as (m, _):
        assert (await m.ussd("*101#")).text == "Early bird"
        reply = await m.ussd("*102#")
    assert (reply.status, reply.text) == (0, "Your balance is 5.00")


async def test_quectel_outgoing_audio_on_when_clcc_shows_active(sims, attach):
    sim = sims("quectel")
    async with attach(sim, serve=True) as (m, _):
        call = await m.dial("+447700900123")
        assert sim.received[-1] == "AT+QPCMV=0;+QPCMV=1,0;D+447700900123;"
        sim.remote_answers()
        await call.wait_state(CallState.ACTIVE, CALL_WAIT_S)
        frames = await read_frames(call.audio, 2)
        assert len(frames[0]) == 320
