"""Outgoing calls through ``AnalogLine.dial`` (the ``Dialler`` contract) against the analog
simulator over a real pty: VCON, the callee's tone, in-band DTMF, hang-ups, failures."""
import asyncio

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, LineKind
from drivers.sim.callee import Outcome, SimCallee
from drivers.voicemodem.line import AnalogLine
from media.dtmf import DtmfDetector
from tests.support.modems import dominant_hz, read_audio, rms

from .conftest import WAIT_S, Calls, running_line

QUICK = dict(alert_after_s=0.05, answer_after_s=0.3)


async def answered(call) -> None:
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()


async def ended(call) -> HangupCause:
    async with asyncio.timeout(WAIT_S):
        return await call.wait_ended()


@pytest.mark.parametrize("profile", ["conexant", "agere", "usr5637"])  # 8-bit offset, u-law; half duplex
async def test_dial_answered_callee_tone_dtmf_and_our_hangup(sim_factory, profile):
    sim = await sim_factory(profile, callee=SimCallee(tone_hz=800.0, **QUICK))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("555-1234")
        assert (call.kind, call.line_id, call.called) == (LineKind.ANALOG, "analog:0", "5551234")
        assert await call.send_dtmf("5") is False  # not answered yet
        await answered(call)
        assert sim.dialled == ["5551234"] and "ATD5551234;" in sim.commands()
        pcm = await read_audio(call.audio, 25)  # 0.5 s of the callee, converted to 8 kHz s16le
        assert len(pcm) == 25 * 320 and abs(dominant_hz(pcm) - 800.0) < 20 and rms(pcm) > 2000
        if profile == "usr5637":
            assert not call.audio.full_duplex and await call.send_dtmf("5") is False
        else:
            assert call.audio.full_duplex and await call.send_dtmf("5") is True
            for _ in range(15):  # the bridge's frames: the digit's tone takes their place
                call.audio.write_frame(bytes(320))
            await sim.wait_for(lambda: len(sim.received_audio) >= 15 * 160)
            heard = DtmfDetector().feed(sim.converter().to_pcm(bytes(sim.received_audio)))
            assert heard == ["5"]
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        assert await ended(call) is HangupCause.AGENT_HUNG_UP
        assert sim.commands()[-1] == "AT+VLS=0" and not sim.off_hook
        await call.hangup(HangupCause.AGENT_HUNG_UP)  # idempotent
        assert sim.commands().count("AT+VLS=0") == 1


async def test_far_end_hangs_up_with_busy_tone(sim_factory):
    sim = await sim_factory("conexant", callee=SimCallee(hangup_after_s=0.3, **QUICK))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        await answered(call)
        assert await ended(call) is HangupCause.FAR_END_HUNG_UP
        await sim.wait_for(lambda: not sim.off_hook)
        assert ("dle", "!") in sim.log and sim.commands()[-1] == "AT+VLS=0"
        async with asyncio.timeout(WAIT_S):
            await line.wait_idle()
        again = await line.dial("5551234")  # the line is free again
        await answered(again)
        await again.hangup(HangupCause.AGENT_HUNG_UP)


@pytest.mark.parametrize("outcome,failure", [(Outcome.BUSY, DialFailure.BUSY),
                                             (Outcome.NO_ANSWER, DialFailure.NO_ANSWER),
                                             (Outcome.UNREACHABLE, DialFailure.UNREACHABLE)])
async def test_dial_fails(sim_factory, outcome, failure):
    sim = await sim_factory("conexant", callee=SimCallee(outcome=outcome, **QUICK))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is failure and "5551234" in err.value.detail
        assert await ended(call) is HangupCause.REJECTED
        assert "AT+VTR" not in sim.commands() and not sim.off_hook
        async with asyncio.timeout(WAIT_S):
            await line.wait_idle()


async def test_no_dial_tone_is_line_down(sim_factory):
    sim = await sim_factory("conexant", dial_result="NO DIALTONE")
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is DialFailure.LINE_DOWN


async def test_cancel_while_dialling_aborts_the_atd(sim_factory):
    sim = await sim_factory("conexant", callee=SimCallee(alert_after_s=0.05, answer_after_s=30.0))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        await sim.wait_for(lambda: sim.far_end is not None)
        await call.hangup(HangupCause.CANCELLED)
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is DialFailure.CANCELLED
        assert await ended(call) is HangupCause.CANCELLED
        assert ("sim", "dial aborted by the host") in sim.log
        assert sim.commands()[-1] == "AT+VLS=0" and not sim.off_hook and "AT+VTR" not in sim.commands()
        async with asyncio.timeout(WAIT_S):
            await line.wait_idle()


async def test_vcon_at_once_counts_as_answered_then_busy_tone_ends_it(sim_factory):
    sim = await sim_factory("conexant", vcon_at_once=True,
                            callee=SimCallee(outcome=Outcome.BUSY, alert_after_s=0.1, answer_after_s=0.5))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        await answered(call)  # VCON came at once: "answered" while the far end still rings
        assert not sim.far_end.answered
        assert await ended(call) is HangupCause.FAR_END_HUNG_UP  # <DLE>b: busy after the "answer"


async def test_vcon_at_once_tone_after_the_real_answer(sim_factory):
    sim = await sim_factory("conexant", vcon_at_once=True,
                            callee=SimCallee(tone_hz=1200.0, alert_after_s=0.1, answer_after_s=1.0))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        await answered(call)
        assert not sim.far_end.answered  # VCON came at once: "answered" while the far end still rings
        await sim.wait_for(lambda: sim.far_end.answered, timeout=WAIT_S)
        await read_audio(call.audio, 10)  # what was buffered around the answer
        pcm = await read_audio(call.audio, 25)
        assert abs(dominant_hz(pcm) - 1200.0) < 20
        # what the modem streamed: silence while it rang, then the callee
        streamed = sim.converter().to_pcm(bytes(sim.sent_audio[:800]))
        assert rms(streamed) < 100
        await call.hangup(HangupCause.AGENT_HUNG_UP)


async def test_withheld_uses_the_configured_prefix(sim_factory):
    sim = await sim_factory("conexant", callee=SimCallee(**QUICK))
    async with running_line(sim, Calls(), withhold_prefix="141") as line:
        call = await line.dial("5551234", CallerId(None, None, "withheld"))
        await answered(call)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        call = await line.dial("5551234", CallerId("5550000", None, "available"))
        await answered(call)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
    assert sim.dialled == ["1415551234", "5551234"]


async def test_line_down_busy_and_bad_number(sim_factory):
    idle = AnalogLine(line_id="analog:9", port="/dev/nonexistent", handler=Calls())
    with pytest.raises(DialFailed) as err:
        await idle.dial("5551234")
    assert err.value.reason is DialFailure.LINE_DOWN

    sim = await sim_factory("conexant", callee=SimCallee(**QUICK))
    async with running_line(sim, Calls()) as line:
        with pytest.raises(DialFailed) as err:
            await line.dial("+44 7700 900123")
        assert err.value.reason is DialFailure.REJECTED
        call = await line.dial("5551234")
        with pytest.raises(DialFailed) as err:
            await line.dial("5559999")
        assert err.value.reason is DialFailure.LINE_BUSY and "in use" in err.value.detail
        await answered(call)
        with pytest.raises(DialFailed) as err:
            await line.dial("5559999")
        assert err.value.reason is DialFailure.LINE_BUSY
        await call.hangup(HangupCause.AGENT_HUNG_UP)
    assert sim.dialled == ["5551234"]


async def test_dtmf_from_the_far_end_reaches_on_dtmf(sim_factory):
    sim = await sim_factory("conexant", callee=SimCallee(**QUICK))
    async with running_line(sim, Calls()) as line:
        call = await line.dial("5551234")
        digits, got = [], asyncio.Event()
        call.on_dtmf(lambda d: (digits.append(d), got.set()))
        await answered(call)
        await sim.wait_for(lambda: sim.mode.value == "voice full duplex")
        sim.send_dtmf("4")
        sim.send_dtmf("#", shielded=False)
        async with asyncio.timeout(WAIT_S):
            while len(digits) < 2:
                got.clear()
                await got.wait()
        assert digits == ["4", "#"]
        await call.hangup(HangupCause.AGENT_HUNG_UP)
