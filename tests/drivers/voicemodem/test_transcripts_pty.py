"""Analog transcripts 32, 34, 36 and 39 through the real driver (AnalogLine) over a real pty.

The simulator answers commands; the ``←`` lines that matter are sent verbatim with
``send_raw`` so the driver sees exactly the transcript's bytes.
"""
import asyncio

from appliance.lines import CallerId, HangupCause
from drivers.voicemodem.dle import VoiceEvent
from drivers.voicemodem.modem import ModemSettings, PlayResult, PortMode
from drivers.voicemodem.state import LineState

from .conftest import WAIT_S, Calls, running_line


def in_order(seq, *wanted):
    """True if ``wanted`` appear in ``seq`` in this order (other items may come between)."""
    it = iter(seq)
    return all(any(x == w for x in it) for w in wanted)


async def test_transcript_32_us_caller_id_between_rings_then_abandon(sim_factory):
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(ring_abandon_s=0.5)) as line:
        # ATZ made the Conexant forget +VCID; AT+VCID? answered a bare "0"; the driver re-enabled it
        assert in_order(sim.commands(), "ATZ", "ATE0", "AT+VCID?", "AT+VCID=1")
        assert sim.cid_mode == 1
        sim.send_raw(b"\r\nRING\r\n")
        sim.send_raw(b"\r\nDATE = 0314\r\nTIME = 1205\r\nNMBR = 5035551234\r\nNAME = SMITH JOHN\r\n\r\n")
        call = await calls.next()
        assert call.caller == CallerId("5035551234", "SMITH JOHN", "available")
        assert (call.report.date, call.report.time) == ("0314", "1205")
        sim.send_raw(b"\r\nRING\r\n")
        sim.send_raw(b"\r\nRING\r\n")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.CANCELLED  # rings stopped: abandoned
        assert calls.queue.empty()  # the later RINGs did not create a second call
        assert line.modem.machine.state is LineState.IDLE


async def offered(sim, calls, *chunks):
    for chunk in chunks:
        sim.send_raw(chunk)
    call = await calls.next()
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.CANCELLED
    return call


async def test_transcript_34_private_and_unavailable_formatted_and_raw(sim_factory):
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(ring_abandon_s=0.8)):
        call = await offered(sim, calls, b"\r\nRING\r\n",
                             b"\r\nDATE = 1102\r\nTIME = 0815\r\nNMBR = P\r\nNAME = P\r\n\r\n")
        assert call.caller == CallerId(None, None, "withheld")
        assert (call.report.date, call.report.time) == ("1102", "0815")

    sim = await sim_factory("conexant")
    async with running_line(sim, calls, settings=ModemSettings(ring_abandon_s=0.8, caller_id_raw=True)):
        assert "AT+VCID=2" in sim.commands() and sim.cid_mode == 2
        call = await offered(sim, calls, b"\r\nRING\r\n",
                             b"\r\n802201083033313431323035020A35303335353531323334070A534D495448204A4F484ED3\r\n")
        assert call.caller == CallerId("5035551234", "SMITH JOHN", "available") and call.report.trusted
        call = await offered(sim, calls, b"\r\nRING\r\n", b"\r\n80100108313130323038313504015008015027\r\n")
        assert call.caller == CallerId(None, None, "withheld") and call.report.date == "1102"
        call = await offered(sim, calls, b"\r\nRING\r\n", b"\r\n040930333039313430354F0E\r\n")
        assert call.caller == CallerId(None, None, "unavailable") and call.report.time == "1405"
        # the manual's inconsistent example: reported, never trusted
        call = await offered(sim, calls, b"\r\nRING\r\n", b"\r\n801E01083130313532303338\r\n")
        assert not call.report.trusted and call.caller == CallerId(None, None, "unavailable")


async def test_transcript_36_answer_record_silence_busy_and_stop_handshake(sim_factory):
    sim = await sim_factory("usr5637")
    sim.stop_trailer = b"\x80\x80"  # trailing audio before <DLE><ETX>
    sim.stop_reply_delay_s = 0.2  # so "waits for <DLE><ETX> and OK" is observable
    calls = Calls()
    settings = ModemSettings(silence_tenths=50, cid_wait_s=0.1, rx_buffer_ms=2000)
    async with running_line(sim, calls, settings=settings) as line:
        assert in_order(sim.commands(), "AT+FCLASS=8", "AT+VSM=?", "AT+VSM=128,8000", "AT+VSD=128,50")
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        assert call.caller == CallerId(None, None, "unavailable")
        await call.answer()
        assert in_order(sim.commands(), "AT+VLS=1", "AT+VRX")
        assert "AT+VTR" not in sim.commands()  # USR 5637 profile: half duplex
        assert not call.audio.full_duplex
        assert line.modem.mode is PortMode.VOICE
        sim.send_raw(b"\x80\x81\x7f\x80\x82\x7e" * 400)
        sim.send_raw(b"\x80\x80\x10s\x80\x80")
        sim.send_raw(b"\x80\x10b\x80")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
        await sim.wait_for(lambda: "AT+VLS=0" in sim.commands())
        # <DLE>! went out, the modem's <DLE><ETX> + OK came back, only then AT+VLS=0
        assert in_order(sim.log, ("dle", "!"), ("sent", "end of voice data"), ("cmd", "AT+VLS=0"))
        assert sim.log.count(("dle", "!")) == 1
        async with asyncio.timeout(WAIT_S):
            await line.wait_idle()
        assert line.modem.machine.state is LineState.IDLE
        # the recording holds exactly the audio bytes, DLE codes stripped
        expected = b"\x80\x81\x7f\x80\x82\x7e" * 400 + b"\x80\x80\x80\x80" + b"\x80\x80" + b"\x80\x80"
        pcm = sim.converter().to_pcm(expected)
        frames = []
        while (frame := call.audio.read_frame_nowait()) is not None:
            frames.append(frame)
        got = b"".join(frames)
        assert len(frames) == len(expected) // 160
        assert got == pcm[: len(got)]
        assert call.audio.statistics().rx_received_bytes == len(pcm)


async def test_transcript_39_playback_underrun_then_handset_aborts(sim_factory):
    sim = await sim_factory("conexant")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        modem = line.modem
        await modem.stop_voice()  # out of +VTR, still off hook: ready to announce
        play = asyncio.create_task(modem.play(bytes(2 * 8000 * 2)), name="test-play")  # 2 s of silence
        await sim.wait_for(lambda: len(sim.received_audio) >= 800)  # 100 ms of audio
        sim.send_raw(b"\x10u")  # buffer underrun (host was late)
        await sim.wait_for(lambda: len(sim.received_audio) >= 2400)
        sim.send_raw(b"\x10P")  # extension handset lifted (Conexant)
        async with asyncio.timeout(WAIT_S):
            assert await play is PlayResult.INTERRUPTED
        assert in_order(sim.log, ("cmd", "AT+VTX"), ("result", "CONNECT"), ("dle", "\x18"), ("dle", "\x03"),
                        ("result", "OK"))
        assert set(sim.received_audio) == {0x80}  # silence, 8-bit offset binary
        assert len(sim.received_audio) < 16000  # aborted well before the 2 s were sent
        assert modem.machine.counts[VoiceEvent.UNDERRUN] == 1  # logged once, not fatal
        assert modem.mode is PortMode.COMMAND
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        assert sim.commands()[-1] == "AT+VLS=0"
        assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP


async def test_playback_completes_and_modem_plays_out(sim_factory):
    sim = await sim_factory("usr5637")
    calls = Calls()
    async with running_line(sim, calls, settings=ModemSettings(cid_wait_s=0.05)) as line:
        sim.send_raw(b"\r\nRING\r\n")
        call = await calls.next()
        await call.answer()
        await line.modem.stop_voice()
        tone = bytes(range(0, 256, 2)) * 25  # 0.2 s of PCM bytes (includes values that shield)
        async with asyncio.timeout(WAIT_S):
            assert await line.modem.play(tone) is PlayResult.COMPLETED
        assert in_order(sim.log, ("cmd", "AT+VTX"), ("dle", "\x03"), ("result", "OK"))
        assert bytes(sim.received_audio) == sim.converter().from_pcm(tone)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
