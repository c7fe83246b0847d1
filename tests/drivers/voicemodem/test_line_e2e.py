"""End to end through AnalogLine over a pty: caller ID, answer, audio both ways, DTMF, faults."""
import asyncio
import wave

import numpy as np

from appliance.lines import CallerId, CallGone, HangupCause
from drivers.sim.analog import AnalogModemSim, SimCaller, load_wav
from drivers.voicemodem.modem import DialResult, ModemSettings
from drivers.voicemodem.state import LineState

from .conftest import WAIT_S, Calls, running_line, sweep_pcm
from .test_transcripts_pty import in_order


def correlation(a: bytes, b: bytes) -> float:
    x = np.frombuffer(a, "<i2").astype(float)
    y = np.frombuffer(b, "<i2").astype(float)
    return float(np.corrcoef(x, y)[0, 1])


def write_wav(path, pcm: bytes) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return str(path)


async def read_pcm(audio, nbytes: int) -> bytes:
    got = bytearray()
    async with asyncio.timeout(WAIT_S):
        while len(got) < nbytes:
            frame = await audio.read_frame()
            assert frame is not None, "audio closed early"
            assert len(frame) == 320
            got += frame
    return bytes(got[:nbytes])


async def test_us_caller_id_answer_audio_dtmf_and_busy(sim_factory, tmp_path):
    pcm = load_wav(write_wav(tmp_path / "caller.wav", sweep_pcm(1.0)))
    sim = await sim_factory("conexant", audio=pcm, time_scale=0.1)
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(rx_buffer_ms=1000)) as line:
        ringing = asyncio.create_task(sim.ring(SimCaller(), style="us", rings=4), name="test-ring")
        try:
            call = await calls.next()
            assert call.caller == CallerId("5035551234", "SMITH JOHN", "available")
            assert call.line_id == "analog:0" and call.kind == "analog"
            digits: list[str] = []
            got_digit = asyncio.Event()
            call.on_dtmf(lambda d: (digits.append(d), got_digit.set()))
            await call.answer()
        finally:
            ringing.cancel()
        assert "AT+VTR" in sim.commands() and call.audio.full_duplex  # Conexant: full duplex

        # caller -> us: the WAV, 8-bit offset-binary on the wire, with 0x10 samples shielded
        received = await read_pcm(call.audio, len(pcm))
        assert 0x10 in sim.sent_audio[:8000], "test audio must contain literal DLE bytes"
        assert correlation(received, pcm) >= 0.9

        # us -> caller: frames written by the bridge reach the modem, converted and shielded
        tone = sweep_pcm(0.2, amplitude=0.95)
        for i in range(0, len(tone), 320):
            call.audio.write_frame(tone[i : i + 320])
        await sim.wait_for(lambda: len(sim.received_audio) >= len(tone) // 2)
        back = sim.converter().to_pcm(bytes(sim.received_audio[: len(tone) // 2]))
        assert correlation(back, tone) >= 0.9

        # DTMF: IS-101 shielded group and a bare digit
        sim.send_dtmf("5")
        sim.send_dtmf("#", shielded=False)
        async with asyncio.timeout(WAIT_S):
            while len(digits) < 2:
                got_digit.clear()
                await got_digit.wait()
        assert digits == ["5", "#"]

        # busy tone mid-call: the far end hung up
        sim.send_event("b")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
            await line.wait_idle()
        assert ("dle", "!") in sim.log and sim.commands()[-1] == "AT+VLS=0"
        await call.hangup(HangupCause.AGENT_HUNG_UP)  # idempotent
        assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP


async def test_dial_tone_and_silence_end_the_call(sim_factory):
    sim = await sim_factory("agere")
    calls = Calls()
    settings = ModemSettings(cid_wait_s=0.05, long_silence_s=0.3)
    async with running_line(sim, calls, settings=settings) as line:
        for code in ("d", "q"):
            sim.send_raw(b"\r\nRING\r\n")
            call = await calls.next()
            await call.answer()
            assert "AT+VSM=130,8000" in sim.commands()  # Agere: u-law is code 130 there
            assert in_order(sim.log, ("cmd", "AT+VLS=1"), ("result", "VCON"))  # VCON accepted as answered
            sim.send_event(code)
            async with asyncio.timeout(WAIT_S):
                assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
                await line.wait_idle()


async def test_busy_mid_call_on_half_duplex_usr(sim_factory):
    sim = await sim_factory("usr5637", audio=sweep_pcm(0.5))
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        assert not call.audio.full_duplex
        call.audio.write_frame(bytes(320))  # half duplex: dropped, never blocks or raises
        assert call.audio.statistics()["tx_dropped_frames"] == 1
        await read_pcm(call.audio, 3200)
        sim.send_event("b")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
            await line.wait_idle()


async def test_modem_vanishes_mid_call_and_comes_back(sim_factory):
    sim = await sim_factory("conexant", audio=sweep_pcm(0.5), time_scale=0.05)
    calls = Calls()
    async with running_line(sim, calls) as line:
        ringing = asyncio.create_task(sim.ring(SimCaller(), style="uk", rings=2), name="test-ring")
        call = await calls.next()
        await ringing
        await call.answer()
        await read_pcm(call.audio, 1600)
        runs = line.runs
        sim.vanish()
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.LINE_LOST
        async with asyncio.timeout(WAIT_S):  # closed audio drains, then says so, never blocks
            while await call.audio.read_frame() is not None:
                pass
        call.audio.write_frame(bytes(320))  # writing to a vanished modem is dropped, not raised
        before = len(sim.commands())
        sim.reappear()  # new pty name; the line resolves the port again on restart
        async with asyncio.timeout(WAIT_S):
            await line.wait_up()
        assert line.runs > runs
        # fresh power-on: the driver reset it and re-enabled caller ID
        after = sim.commands()[before:]
        assert "ATZ" in after and "AT+VCID=1" in after and sim.cid_mode == 1
        # and the line takes calls again
        ringing = asyncio.create_task(sim.ring(SimCaller(number="07700900123", name=None), style="uk", rings=1),
                                      name="test-ring-2")
        call2 = await calls.next()
        await ringing
        assert call2.caller == CallerId("07700900123", None, "available")
        assert call2.call_id != call.call_id


async def test_answer_after_caller_gave_up_raises_call_gone(sim_factory):
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05, ring_abandon_s=0.2)):
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.CANCELLED
        try:
            await call.answer()
        except CallGone:
            pass
        else:
            raise AssertionError("answer() after abandonment must raise CallGone")
        assert "AT+VLS=1" not in sim.commands()


async def test_outbound_dial_results(sim_factory):
    sim = await sim_factory("conexant", audio=sweep_pcm(0.3))
    calls = Calls()
    async with running_line(sim, calls) as line:
        modem = line.modem
        for final, expected in (("BUSY", DialResult.BUSY), ("NO CARRIER", DialResult.NO_CARRIER),
                                ("NO DIALTONE", DialResult.NO_DIALTONE), ("NO ANSWER", DialResult.NO_ANSWER),
                                ("ERROR", DialResult.ERROR)):
            sim.dial_result = final
            assert await modem.dial("5551234") is expected
            assert modem.machine.state is LineState.IDLE
        sim.dial_result = "VCON"
        assert await modem.dial("5551234") is DialResult.CONNECTED
        assert sim.commands()[-2:] == ["ATD5551234;", "AT+VTR"]
        assert modem.machine.state is LineState.VOICE
        await read_pcm(modem.audio, 1600)
        modem.machine.transition(LineState.HANGING_UP, "test done")
        await modem.stop_voice()
        await modem.on_hook()
        assert modem.machine.state is LineState.IDLE and sim.commands()[-1] == "AT+VLS=0"
