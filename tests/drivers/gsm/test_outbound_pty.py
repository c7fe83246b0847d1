"""Outgoing calls through ``GsmLine.dial`` (the ``Dialler`` contract) against the GSM
simulator over real ptys: answer, the callee's audio, DTMF, hang-ups, failures, CLIR."""
import asyncio

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, LineKind
from drivers.gsm import modem as modem_mod
from drivers.gsm.calls import CallState
from drivers.gsm.line import GsmConfig, GsmLine
from drivers.sim.callee import Outcome, SimCallee
from tests.support.modems import WAIT_S, dominant_hz, read_audio, rms, running_gsm_line

NUMBER = "+447700900123"
QUICK = dict(alert_after_s=0.05, answer_after_s=0.3)
DIAL = {"huawei": f"ATD{NUMBER};", "simcom": f"ATD{NUMBER};", "generic": f"ATD{NUMBER};",
        "quectel": f"AT+QPCMV=0;+QPCMV=1,0;D{NUMBER};"}
DTMF = {"huawei": "AT^DTMF=1,5", "simcom": 'AT+VTS="5"', "generic": "AT+VTS=5", "quectel": "AT+VTS=5"}


async def answered(call) -> None:
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()


async def ended(call) -> HangupCause:
    async with asyncio.timeout(WAIT_S):
        return await call.wait_ended()


@pytest.mark.parametrize("profile", ["huawei", "simcom", "quectel", "generic"])
async def test_dial_answered_callee_audio_dtmf_and_our_hangup(sims, profile):
    sim = sims(profile, callee=SimCallee(tone_hz=1000.0, alert_after_s=0.05, answer_after_s=0.6))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        assert (call.kind, call.line_id, call.called) == (LineKind.GSM, line.line_id, NUMBER)
        assert call.line_id == "gsm:356938035643809" and call.call_id.startswith("gsm-")
        assert DIAL[profile] in sim.received
        assert call.state is not CallState.ACTIVE  # ATD's OK is not the answer
        assert await call.send_dtmf("5") is False  # nothing to send DTMF to while it rings
        await answered(call)
        assert call.state is CallState.ACTIVE
        if profile in ("huawei", "simcom"):  # progress URCs: alerting is seen for sure
            assert call.history[:3] == [CallState.DIALING, CallState.ALERTING, CallState.ACTIVE]
        if sim.audio_port is not None:
            pcm = await read_audio(call.audio, 25)  # 0.5 s of the callee
            assert len(pcm) == 25 * 320
            assert abs(dominant_hz(pcm) - 1000.0) < 20 and rms(pcm) > 2000
        else:  # generic 3GPP modem: analog codec pins only, no PCM port for us
            assert call.audio.read_frame_nowait() is None
        assert await call.send_dtmf("5") is True
        await sim.wait_received(DTMF[profile])
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        await sim.wait_received("AT+CHUP")
        assert await ended(call) is HangupCause.AGENT_HUNG_UP
        await call.hangup(HangupCause.AGENT_HUNG_UP)  # idempotent
        assert sim.received.count("AT+CHUP") == 1
        assert not sim.audio_streaming


@pytest.mark.parametrize("profile", ["huawei", "simcom", "quectel", "generic"])
async def test_far_end_hangs_up(sims, profile):
    sim = sims(profile, callee=SimCallee(hangup_after_s=0.3, **QUICK))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        await answered(call)
        assert await ended(call) is HangupCause.FAR_END_HUNG_UP
        assert "AT+CHUP" not in sim.received
        # the line is free again: the next dial is accepted
        again = await line.dial(NUMBER)
        await answered(again)
        await again.hangup(HangupCause.AGENT_HUNG_UP)


@pytest.mark.parametrize("profile", ["huawei", "simcom", "quectel", "generic"])
@pytest.mark.parametrize("outcome,failure", [(Outcome.BUSY, DialFailure.BUSY),
                                             (Outcome.NO_ANSWER, DialFailure.NO_ANSWER),
                                             (Outcome.UNREACHABLE, DialFailure.UNREACHABLE)])
async def test_dial_fails_before_answer(sims, profile, outcome, failure):
    sim = sims(profile, callee=SimCallee(outcome=outcome, **QUICK))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is failure and NUMBER in err.value.detail
        assert await ended(call) is HangupCause.REJECTED
        assert CallState.ACTIVE not in call.history and not line.modem.audio.enabled


async def test_quectel_answer_and_far_end_hang_up_come_from_dsci_not_polling(sims, monkeypatch):
    monkeypatch.setattr(modem_mod, "CLCC_POLL_S", 60.0)  # no +CLCC poll inside this test
    sim = sims("quectel", callee=SimCallee(hangup_after_s=0.3, **QUICK))
    async with running_gsm_line(sim) as line:
        assert "AT^DSCI=1" in sim.received  # bring-up turned the call-state URCs on
        call = await line.dial(NUMBER)
        await answered(call)  # from "^DSCI: 1,0,3,0,+447700900123,145"
        assert await ended(call) is HangupCause.FAR_END_HUNG_UP  # "^DSCI: 1,0,6,..." then NO CARRIER
        assert "AT+CLCC" not in sim.received
        assert call.history == [CallState.DIALING, CallState.ACTIVE, CallState.IDLE]


async def test_cancel_while_ringing(sims):
    sim = sims("huawei", callee=SimCallee(alert_after_s=0.05, answer_after_s=30.0))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        await call.wait_state(CallState.ALERTING, WAIT_S)
        waiter = asyncio.create_task(call.wait_answered(), name="test-wait-answered")
        await call.hangup(HangupCause.CANCELLED)
        with pytest.raises(DialFailed) as err:
            async with asyncio.timeout(WAIT_S):
                await waiter
        assert err.value.reason is DialFailure.CANCELLED
        assert await ended(call) is HangupCause.CANCELLED
        await sim.wait_received("AT+CHUP")
        assert sim.model.call is None


@pytest.mark.parametrize("profile", ["generic", "quectel"])
async def test_withheld_caller_dials_with_clir(sims, profile):
    sim = sims(profile, callee=SimCallee(**QUICK))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER, CallerId(None, None, "withheld"))
        assert sim.model.call.clir
        assert sim.received[-1] == DIAL[profile][:-1] + "I;"  # bytes on the wire: ...D+4477...I;
        await answered(call)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        call2 = await line.dial(NUMBER, CallerId("+441234", None, "available"))
        await answered(call2)
        assert not sim.model.call.clir
        await call2.hangup(HangupCause.AGENT_HUNG_UP)


async def test_line_down_busy_and_bad_number(sims):
    line = GsmLine(GsmConfig(port="/dev/does-not-exist", profile="huawei"))
    with pytest.raises(DialFailed) as err:
        await line.dial(NUMBER)
    assert err.value.reason is DialFailure.LINE_DOWN and "not connected" in err.value.detail

    sim = sims("huawei", callee=SimCallee(alert_after_s=0.05, answer_after_s=30.0))
    async with running_gsm_line(sim) as line:
        with pytest.raises(DialFailed) as err:
            await line.dial("call me maybe")
        assert err.value.reason is DialFailure.REJECTED
        call = await line.dial("+44 7700 900-123")  # punctuation a person types is dropped
        assert call.called == NUMBER
        with pytest.raises(DialFailed) as err:
            await line.dial("+447700900999")
        assert err.value.reason is DialFailure.LINE_BUSY and "already on a call" in err.value.detail
        await call.hangup(HangupCause.CANCELLED)
        assert sim.received.count(f"ATD{NUMBER};") == 1 and "ATD+447700900999;" not in sim.received


async def test_modem_lost_while_ringing_is_line_down(sims):
    sim = sims("huawei", callee=SimCallee(alert_after_s=0.05, answer_after_s=30.0))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        await call.wait_state(CallState.ALERTING, WAIT_S)
        sim.vanish()
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is DialFailure.LINE_DOWN
        assert await ended(call) is HangupCause.LINE_LOST
        with pytest.raises(DialFailed) as err:
            await line.dial(NUMBER)
        assert err.value.reason is DialFailure.LINE_DOWN


async def test_colp_ok_on_answer_counts_as_answered(sims):
    # AT+COLP=1 modems: ATD's OK comes only when the far end answers, after +COLP:
    sim = sims("generic")
    sim.script(f"ATD{NUMBER};", [b'\r\n+COLP: "+447700900123",145,,,\r\n\r\nOK\r\n'])
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        await answered(call)
        assert call.state is CallState.ACTIVE
        await call.hangup(HangupCause.AGENT_HUNG_UP)


@pytest.mark.parametrize("reply,failure", [(b"\r\n+CME ERROR: 30\r\n", DialFailure.UNREACHABLE),
                                           (b"\r\n+CME ERROR: 3\r\n", DialFailure.REJECTED),
                                           (b"\r\nNO DIALTONE\r\n", DialFailure.UNREACHABLE),
                                           (b"\r\nBUSY\r\n", DialFailure.BUSY)])
async def test_atd_refused_at_once(sims, reply, failure):
    sim = sims("generic")
    sim.script(f"ATD{NUMBER};", [reply])
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        assert call.ended  # the immediate result arrived before dial() returned
        with pytest.raises(DialFailed) as err:
            await answered(call)
        assert err.value.reason is failure
        again = await line.dial(NUMBER)  # the modem is free for the next attempt
        assert again is not call
        await again.hangup(HangupCause.CANCELLED)


async def test_dtmf_from_the_far_end_reaches_on_dtmf(sims):
    sim = sims("simcom", callee=SimCallee(**QUICK))
    async with running_gsm_line(sim) as line:
        call = await line.dial(NUMBER)
        digits, got = [], asyncio.Event()
        call.on_dtmf(lambda d: (digits.append(d), got.set()))
        await answered(call)
        sim.urc("+RXDTMF: 7")
        sim.urc("+RXDTMF: #")
        async with asyncio.timeout(WAIT_S):
            while len(digits) < 2:
                got.clear()
                await got.wait()
        assert digits == ["7", "#"]
        assert await call.send_dtmf("x") is False  # not a DTMF digit: nothing is sent
        await call.hangup(HangupCause.AGENT_HUNG_UP)
