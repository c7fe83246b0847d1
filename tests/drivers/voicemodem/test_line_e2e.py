"""End to end through AnalogLine over a pty: caller ID, answer, audio both ways, DTMF, faults."""
import asyncio
import contextlib
import wave

import numpy as np
import pytest

from appliance.lines import CallerId, CallGone, HangupCause
from drivers.sim.analog import SimCaller, load_wav
from drivers.voicemodem import profiles
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


@pytest.mark.parametrize("sim_profile", ["conexant", "agere"])  # 8-bit offset binary; u-law
async def test_us_caller_id_answer_audio_dtmf_and_busy(sim_factory, tmp_path, sim_profile):
    pcm = load_wav(write_wav(tmp_path / "caller.wav", sweep_pcm(1.0)))
    sim = await sim_factory(sim_profile, audio=pcm, time_scale=0.1)
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
        assert "AT+VTR" in sim.commands() and call.audio.full_duplex  # both chipsets: full duplex

        # caller -> us: the WAV in the modem's format on the wire, with 0x10 bytes shielded
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
        assert call.audio.statistics().tx_dropped_frames == 1
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


async def test_rejecting_a_ringing_call_lets_it_ring_out_without_new_offers(sim_factory):
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05, ring_abandon_s=1.0)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.hangup(HangupCause.REJECTED)
        assert await call.wait_ended() is HangupCause.REJECTED
        sim.send_raw(b"\r\nRING\r\n")  # still ringing: not a new call
        async with asyncio.timeout(WAIT_S):
            await line.wait_idle()  # the caller gave up
        assert calls.queue.empty()
        assert not any(c.startswith(("AT+VLS", "ATA", "ATH")) for c in sim.commands())


async def test_shutdown_mid_call_hangs_up_the_modem(sim_factory):
    sim = await sim_factory("conexant", audio=sweep_pcm(0.5))
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05)):
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        await read_pcm(call.audio, 640)
    # leaving the context cancelled the line task
    assert await call.wait_ended() is HangupCause.SHUTDOWN
    assert in_order(sim.log, ("dle", "!"), ("cmd", "AT+VLS=0"))


async def test_garbage_mid_call_over_the_pty_leaves_the_line_usable(sim_factory):
    import random

    rng = random.Random(1234)
    garbage = bytes(rng.randrange(256) for _ in range(20_000))
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05, ring_abandon_s=0.3)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        sim.send_raw(garbage)
        sim.send_event("b")  # if the garbage has not already ended the call, busy does
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
            await line.wait_idle()
        assert line.modem is not None and line.runs == 1  # no restart was needed
        sim.send_raw(b"\r\nRING\r\n\r\nNMBR = 07700900123\r\n")
        call2 = await calls.next()
        assert call2.caller.number == "07700900123"


@pytest.mark.parametrize(("sim_profile", "forced", "expected", "vsm", "cid"), [
    ("conexant", None, profiles.CONEXANT, "AT+VSM=1,8000", "AT+VCID=1"),
    ("usr5637", None, profiles.USR_5637, "AT+VSM=128,8000", "AT+VCID=1"),
    ("agere", None, profiles.AGERE, "AT+VSM=130,8000", "AT+VCID=1"),
    ("conexant", profiles.ROCKWELL, profiles.ROCKWELL, "AT+VSM=1,8000", "AT#CID=1"),
])
async def test_profiles_detected_and_applied(sim_factory, sim_profile, forced, expected, vsm, cid):
    sim = await sim_factory(sim_profile)
    async with running_line(sim, Calls(), profile=forced) as line:
        assert line.modem.profile is expected
        cmds = sim.commands()
        assert ("ATI0" in cmds) is (forced is None)
        assert vsm in cmds and cid in cmds and sim.cid_mode == 1


async def test_keepalive_repairs_caller_id_a_modem_forgot(sim_factory, monkeypatch):
    from drivers.voicemodem import line as line_module

    monkeypatch.setattr(line_module, "KEEPALIVE_INTERVAL_S", 0.05)
    sim = await sim_factory("conexant")
    async with running_line(sim, Calls()):
        assert sim.cid_mode == 1
        sim.cid_mode = 0  # the chipset reset itself (brown-out) and forgot +VCID
        await sim.wait_for(lambda: sim.cid_mode == 1)
        assert sim.commands().count("AT+VCID=1") == 2


async def test_status_is_published_through_loss_and_recovery(sim_factory):
    from drivers.voicemodem.line import AnalogLine
    from .conftest import FAST_BACKOFF

    sim = await sim_factory("usr5637")
    seen = []
    changed = asyncio.Event()

    def on_status(status):
        seen.append(status)
        changed.set()

    async def wait_state(state, after=0):
        async with asyncio.timeout(WAIT_S):
            while not any(s.state == state for s in seen[after:]):
                changed.clear()
                await changed.wait()

    line = AnalogLine(line_id="analog:3", port=lambda: sim.port, handler=Calls(), backoff=FAST_BACKOFF,
                      on_status=on_status)
    task = asyncio.create_task(line.run(), name="test-line")
    try:
        await wait_state("up")
        up = next(s for s in seen if s.state == "up")
        assert up.kind == "analog" and up.model == "USR 5637" and up.port == sim.port
        assert "8-BIT LINEAR" in up.detail
        mark = len(seen)
        sim.vanish()
        await wait_state("down", mark)
        down = next(s for s in seen[mark:] if s.state == "down")
        assert "went away" in down.detail and "retrying" in down.detail
        mark = len(seen)
        sim.reappear()
        await wait_state("up", mark)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_modem_ignoring_stop_receive_is_left_with_abort_and_bare_ok(sim_factory):
    sim = await sim_factory("conexant", audio=sweep_pcm(0.5))
    sim.ignores_stop_receive = True
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        await read_pcm(call.audio, 1600)
        sim.send_event("b")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
            await line.wait_idle()
        assert in_order(sim.log, ("dle", "!"), ("dle", "\x18"), ("dle", "\x03"), ("result", "OK"),
                        ("cmd", "AT+VLS=0"), ("result", "OK"))
        assert line.modem.machine.state is LineState.IDLE and line.runs == 1
