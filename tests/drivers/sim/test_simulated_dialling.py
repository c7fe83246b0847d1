"""A box with ``simulators = true`` dials out on its simulated GSM and analog lines:
``LineManager.diallers()`` -> ``dial`` -> the simulated callee answers with a tone."""
import asyncio
import contextlib

import pytest

from appliance.config import BoxConfig
from appliance.hub import Topic
from appliance.line_manager import LineManager
from appliance.lines import DialFailed, DialFailure, HangupCause
from appliance.messaging import MessageCenter
from appliance.simulation import SimulationControl, SimulationError
from drivers.gsm.line import GsmLine
from tests.support.modems import dominant_hz, read_audio

WAIT_S = 10.0  # bring-up of two simulated modems on a loaded 2-core machine


async def no_inbound(call) -> None:
    raise AssertionError(f"unexpected inbound call {call.call_id}")


@contextlib.asynccontextmanager
async def line_manager():
    topic = Topic("lines")
    mgr = LineManager(BoxConfig(), topic, no_inbound, MessageCenter(None, Topic("sms")))
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.stop()


async def wait_up(mgr: LineManager) -> None:
    async with asyncio.timeout(WAIT_S):
        for line in mgr.lines.values():
            if isinstance(line, GsmLine):
                await line.wait_ready(WAIT_S)
            else:
                await line.wait_up()


async def test_diallers_lists_down_lines_then_both_simulated_lines_dial_out():
    async with line_manager() as mgr:
        diallers = mgr.diallers()
        assert set(diallers) == {mgr.lines["gsm0"].line_id, "analog:0"}
        for dialler in diallers.values():  # not up yet: the dial plan can say so
            with pytest.raises(DialFailed) as err:
                await dialler.dial("5551234")
            assert err.value.reason is DialFailure.LINE_DOWN
        await wait_up(mgr)
        diallers = mgr.diallers()
        assert set(diallers) == {"gsm:356938035643809", "analog:0"}
        for line_id, dialler in diallers.items():
            call = await dialler.dial("5551234")
            assert call.line_id == line_id
            async with asyncio.timeout(WAIT_S):
                await call.wait_answered()
            pcm = await read_audio(call.audio, 25, timeout=WAIT_S)
            assert abs(dominant_hz(pcm) - 1000.0) < 20, line_id  # the simulated callee's tone
            await call.hangup(HangupCause.AGENT_HUNG_UP)
            async with asyncio.timeout(WAIT_S):
                assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP


async def test_simulation_control_sets_the_callee():
    async with line_manager() as mgr:
        control = SimulationControl(mgr.simulators)
        assert "busy" in control.callee("gsm", "busy", answer_after_s=0.1)
        control.callee("analog", "no_answer", answer_after_s=0.1, number="5550000")
        with pytest.raises(SimulationError):
            control.callee("gsm", "maybe")
        await wait_up(mgr)
        diallers = mgr.diallers()
        for line_id, number, failure in (("gsm:356938035643809", "5551234", DialFailure.BUSY),
                                         ("analog:0", "5550000", DialFailure.NO_ANSWER)):
            call = await diallers[line_id].dial(number)
            with pytest.raises(DialFailed) as err:
                async with asyncio.timeout(WAIT_S):
                    await call.wait_answered()
            assert err.value.reason is failure
        analog = await diallers["analog:0"].dial("5551234")  # other numbers still answer
        async with asyncio.timeout(WAIT_S):
            await analog.wait_answered()
        control.hangup("analog")  # the far end hangs up (busy tone)
        async with asyncio.timeout(WAIT_S):
            assert await analog.wait_ended() is HangupCause.FAR_END_HUNG_UP
        await control.close()
