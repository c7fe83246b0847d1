"""Agents' outbound calls (click-to-dial): agent -> dial plan -> line -> bridge and record -> wrap-up.

``OutboundCalls.dial`` checks what can be checked at once (a diallable number, a dial plan
rule, an agent free to call) and answers the console straight away; one task then runs the
call: the agent's audio (console, or the desk phone rung first), the line chosen by the dial
plan, ringing (early media from the line reaches the agent), the answer, the recorded
conversation, the hang-up and the agent's wrap-up. Every attempt leaves a call record with
direction "outbound", answered or not (then ``hangup_cause`` says why: busy, no answer ...).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import replace
from typing import Callable, Protocol

from appliance.acd.router import Acd, AcdError
from appliance.call_controls import CallerHold, CallerKeys, ControlError
from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from appliance.call_support import CallStore, customer_context, hang_up, save_record, start_recorder, stop_bridge
from appliance.dialplan import DialPlan, normalise
from appliance.hub import Topic
from appliance.lines import DialFailed, DialFailure, HangupCause, OutboundCall
from appliance.records import CallOutcome, CallRecord
from media.bridge import Bridge
from media.frames import LegAudio
from media.tones import HoldMusic

log = logging.getLogger(__name__)

OUTBOUND_RING_TIMEOUT_S = 60.0  # a customer who has not answered after a minute will not (networks stop ~60 s)


class OutboundError(Exception):
    """The agent cannot place this call; the message is shown in the console."""


class AgentAudio(Protocol):
    async def connect_for_outbound(self, agent_id: str, number: str) -> LegAudio: ...


class _Outbound:
    def __init__(self, call_id: str, agent_id: str, agent_name: str, number: str) -> None:
        self.call_id = call_id
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.number = number
        self.started_at = time.time()
        self.state = LiveState.DIALING
        self.since = self.started_at
        self.line_id = ""
        self.line_kind = ""
        self.recording = False
        self.hangup = asyncio.Event()  # the agent hung up (or cancelled while ringing)
        self.line: OutboundCall | None = None  # once answered
        self.hold: CallerHold | None = None  # once answered
        self.keys: CallerKeys | None = None  # once answered

    def snapshot(self, cause: str | None = None) -> LiveCallSnapshot:
        return LiveCallSnapshot(
            call_id=self.call_id, line_id=self.line_id, line_kind=self.line_kind, caller_number=self.number,
            caller_name=None, queue_id=None, state=self.state, since=self.since, arrived_at=self.started_at,
            agent_id=self.agent_id, agent_name=self.agent_name, hangup_cause=cause, recording=self.recording,
            direction="outbound", on_hold=self.hold is not None and self.hold.held)


class OutboundCalls:
    def __init__(self, *, acd: Acd, store: CallStore, calls_topic: Topic, dial_plan: DialPlan,
                 agent_audio: AgentAudio, agent_name: Callable[[str], str], recording: bool, country: str) -> None:
        self._acd = acd
        self._store = store
        self._topic = calls_topic
        self._plan = dial_plan
        self._audio = agent_audio
        self._agent_name = agent_name
        self._recording = recording
        self._country = country
        self._live: dict[str, _Outbound] = {}
        self._tasks: set[asyncio.Task] = set()
        self._accepting = True

    # --- what the console uses ------------------------------------------------------------------
    def dial(self, agent_id: str, number: str) -> str:
        """Start a call from the agent to ``number``; returns its call id. OutboundError when refused."""
        if not self._accepting:
            raise OutboundError("the box is shutting down")
        try:
            dialled = normalise(number)
            self._plan.route(dialled)
        except DialFailed as exc:
            raise OutboundError(exc.detail or str(exc)) from None
        call_id = uuid.uuid4().hex
        try:
            self._acd.start_outbound(agent_id, call_id)
        except AcdError as exc:
            raise OutboundError(str(exc)) from None
        oc = _Outbound(call_id, agent_id, self._agent_name(agent_id), dialled)
        self._live[call_id] = oc
        self._publish(oc)
        log.info("agent %s dials %s (call %s)", agent_id, dialled, call_id)
        task = asyncio.create_task(self._run(oc), name=f"outbound-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call_id

    def agent_hangup(self, agent_id: str) -> bool:
        for oc in self._live.values():
            if oc.agent_id == agent_id and oc.state in (LiveState.DIALING, LiveState.ON_CALL):
                oc.hangup.set()
                return True
        return False

    def agent_hold(self, agent_id: str, on: bool) -> bool:
        """Hold (``on``) or resume the customer; False when the agent has no outbound call."""
        oc = self._answered_call(agent_id)
        if oc is None or oc.hold is None:
            return False
        if on and not oc.hold.held:
            oc.hold.hold()
        elif not on and oc.hold.held:
            oc.hold.resume()
        self._publish(oc)
        return True

    async def agent_keys(self, agent_id: str, digits: str) -> bool:
        """DTMF from the agent's keypad to the customer (an IVR at the far end, say)."""
        oc = self._answered_call(agent_id)
        if oc is None:
            return False
        assert oc.keys is not None  # set with oc.line at the answer
        await oc.keys.send(digits, still=lambda: oc.state is LiveState.ON_CALL)
        return True

    def _answered_call(self, agent_id: str) -> _Outbound | None:
        for oc in self._live.values():
            if oc.agent_id == agent_id and oc.state in (LiveState.DIALING, LiveState.ON_CALL):
                if oc.state is LiveState.DIALING:
                    raise ControlError("the call is not answered yet")
                return oc
        return None

    def live_calls(self) -> list[LiveCallSnapshot]:
        return [oc.snapshot() for oc in self._live.values()]

    # --- one call ---------------------------------------------------------------------------------
    async def _run(self, oc: _Outbound) -> None:
        rec = CallRecord(call_id=oc.call_id, line_id="", line_kind="", direction="outbound", from_number=None,
                         from_name=None, to_number=oc.number, queue=None, outcome=CallOutcome.FAILED,
                         hangup_cause="", arrived_at=oc.started_at, agent_id=oc.agent_id, agent_name=oc.agent_name)
        try:
            customer = await customer_context(self._store, oc.number, self._country, None, oc.call_id)
            rec = replace(rec, customer_id=customer.customer_id)
            rec = await self._place(oc, rec)
        except asyncio.CancelledError:
            rec = replace(rec, hangup_cause=rec.hangup_cause or HangupCause.SHUTDOWN, ended_at=rec.ended_at or time.time())
            await self._end(oc, rec)
            raise
        except Exception:
            log.exception("outbound call %s failed", oc.call_id)
            rec = replace(rec, hangup_cause=rec.hangup_cause or HangupCause.ERROR, ended_at=rec.ended_at or time.time())
        await self._end(oc, rec)

    async def _place(self, oc: _Outbound, rec: CallRecord) -> CallRecord:
        try:
            agent_leg = await self._until_hangup(oc, self._audio.connect_for_outbound(oc.agent_id, oc.number))
            if agent_leg is None:
                return replace(rec, hangup_cause=DialFailure.CANCELLED, ended_at=time.time())
            call = await self._until_hangup(oc, self._plan.dial(oc.number))
            if call is None:
                return replace(rec, hangup_cause=DialFailure.CANCELLED, ended_at=time.time())
        except DialFailed as exc:
            log.info("outbound call %s to %s not placed: %s", oc.call_id, oc.number, exc)
            return replace(rec, hangup_cause=exc.reason.value, ended_at=time.time())
        oc.line_id, oc.line_kind = call.line_id, str(call.kind)
        rec = replace(rec, line_id=call.line_id, line_kind=str(call.kind))
        self._publish(oc)
        ringing = Bridge(call.audio, agent_leg, None)  # the agent hears the network's ringback (early media)
        ringing.start()
        try:
            answered = await self._until_hangup(oc, self._answered(call))
        except DialFailed as exc:
            answered = None
            rec = replace(rec, hangup_cause=exc.reason.value)
            log.info("outbound call %s to %s: %s", oc.call_id, oc.number, exc)
        finally:
            await ringing.stop()
        if not answered:
            await hang_up(call, HangupCause.AGENT_HUNG_UP)
            return replace(rec, hangup_cause=rec.hangup_cause or DialFailure.CANCELLED, ended_at=time.time())
        return await self._talk(oc, rec, call, agent_leg)

    async def _answered(self, call: OutboundCall) -> bool:
        try:
            async with asyncio.timeout(OUTBOUND_RING_TIMEOUT_S):
                await call.wait_answered()
        except TimeoutError:
            raise DialFailed(DialFailure.NO_ANSWER, f"not answered within {OUTBOUND_RING_TIMEOUT_S:.0f}s") from None
        return True

    async def _talk(self, oc: _Outbound, rec: CallRecord, call: OutboundCall, agent_leg: LegAudio) -> CallRecord:
        answered_at = time.time()
        recorder, rel = start_recorder(self._recording, self._store, oc.call_id, answered_at)
        oc.recording = recorder is not None
        bridge = Bridge(call.audio, agent_leg, recorder)
        bridge.start()
        oc.line, oc.hold = call, CallerHold(bridge, call, HoldMusic, f"outbound call {oc.call_id}")
        oc.keys = CallerKeys(call, f"outbound call {oc.call_id}")
        oc.state, oc.since = LiveState.ON_CALL, answered_at
        self._publish(oc)
        log.info("outbound call %s to %s answered on %s", oc.call_id, oc.number, call.line_id)
        ended = asyncio.ensure_future(call.wait_ended())
        agent_done = asyncio.ensure_future(oc.hangup.wait())
        try:
            await asyncio.wait({ended, agent_done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            agent_done.cancel()
            if ended.done():
                cause = HangupCause.FAR_END_HUNG_UP if ended.result() is HangupCause.CALLER_HUNG_UP else ended.result()
            else:
                cause = HangupCause.SHUTDOWN if not self._accepting else HangupCause.AGENT_HUNG_UP
                await hang_up(call, cause)
                ended.cancel()
            ended_at = time.time()
            hold = oc.hold.take_fields()
            await oc.hold.close()
            seconds = await stop_bridge(bridge)
        log.info("outbound call %s ended: %s after %.1fs", oc.call_id, cause, ended_at - answered_at)
        return replace(rec, outcome=CallOutcome.ANSWERED, hangup_cause=str(cause), answered_at=answered_at,
                       ended_at=ended_at, talk_s=ended_at - answered_at, recording_path=rel, recording_s=seconds,
                       **hold)

    async def _until_hangup(self, oc: _Outbound, aw):  # type: ignore[no-untyped-def]
        """Await ``aw`` unless the agent hangs up first (then cancel it and return None)."""
        work = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(oc.hangup.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        work.cancel()  # the driver abandons a dial it was cancelled in
        with contextlib.suppress(asyncio.CancelledError, DialFailed):
            await work
        return None

    async def _end(self, oc: _Outbound, rec: CallRecord) -> None:
        oc.state, oc.since = LiveState.ENDED, time.time()
        self._publish(oc, rec.hangup_cause)
        self._live.pop(oc.call_id, None)
        await self._save(rec)

        def wrapup_done(disposition: str | None) -> None:
            done_at = time.time()
            final = replace(rec, disposition=disposition, wrapup_ended_at=done_at,
                            wrapup_s=done_at - (rec.ended_at or done_at))
            task = asyncio.ensure_future(self._save(final))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._acd.call_ended(oc.agent_id, oc.call_id, on_wrapup_done=wrapup_done)

    async def _save(self, rec: CallRecord) -> None:
        await save_record(self._store, rec)

    def _publish(self, oc: _Outbound, cause: str | None = None) -> None:
        self._topic.publish(CallUpdate(oc.snapshot(cause)))

    async def shutdown(self, timeout: float) -> None:
        self._accepting = False
        for oc in self._live.values():
            oc.hangup.set()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
