"""The inbound call flow: line -> queue -> offer -> answer -> bridge and record -> wrap-up.

``CallCenter.handle_inbound`` is the ``IncomingCallHandler`` every line driver is given.
One task runs each call from arrival to its stored record; the ACD decides who answers.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Protocol

from appliance.acd.events import HistoryItem
from appliance.acd.router import Acd, QueuedCall
from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from appliance.config import BoxConfig, QueueConfig
from appliance.hub import Topic
from appliance.lines import CallGone, HangupCause, InboundCall
from appliance.numbers import to_e164
from appliance.records import CallOutcome, CallRecord
from media.bridge import Bridge
from media.bridge import NullLeg
from media.call_audio import QueueAudio, load_hold_music
from media.tones import HoldMusic
from media.frames import LegAudio
from media.recorder import StereoWavRecorder

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 10.0  # the line must confirm our answer (SIP ACK, modem OK) within this
HANGUP_TIMEOUT_S = 5.0  # a line that cannot confirm a hang-up within this is left to its driver
BRIDGE_STOP_TIMEOUT_S = 10.0  # finalising the recorder (flush + fsync + header) must end by then
CUSTOMER_LOOKUP_TIMEOUT_S = 2.0  # index lookups are in memory; a slow disk must not hold the call
HISTORY_ITEMS = 5  # earlier contacts shown beside an offer


class CallStore(Protocol):
    async def save_call(self, rec: CallRecord) -> str: ...
    async def customer_by_phone(self, number: str) -> Any: ...
    async def upsert_customer(self, customer_id: str | None = None, *, name: str | None = None, phones: tuple[str, ...] = ()) -> Any: ...
    async def interactions_for_customer(self, customer_id: str, limit: int | None = None) -> list[Any]: ...
    def recordings_dir(self) -> Path: ...
    def recordings_allowed(self) -> bool: ...
    def recording_sink_factory(self) -> Any: ...


class AgentMediaDirectory(Protocol):
    def media_for(self, agent_id: str) -> LegAudio | None: ...
    async def wait_reconnected(self, agent_id: str, old: LegAudio, timeout: float) -> LegAudio | None: ...


class _LiveCall:
    """Mutable state of one call; owned by its task."""

    def __init__(self, call: InboundCall, queue: QueueConfig) -> None:
        self.call = call
        self.queue = queue
        self.arrived_at = time.time()
        self.state = LiveState.ARRIVING
        self.since = self.arrived_at
        self.agent_id: str | None = None
        self.agent_name: str | None = None
        self.queued: QueuedCall | None = None
        self.agent_hangup = asyncio.Event()
        self.dtmf: list[str] = []
        self.recording_path: str | None = None
        self.line_answered = False

    def snapshot(self, cause: str | None = None) -> LiveCallSnapshot:
        c = self.call
        return LiveCallSnapshot(
            call_id=c.call_id,
            line_id=c.line_id,
            line_kind=str(c.kind),
            caller_number=c.caller.number,
            caller_name=c.caller.name,
            queue_id=self.queue.id,
            state=self.state,
            since=self.since,
            arrived_at=self.arrived_at,
            agent_id=self.agent_id,
            agent_name=self.agent_name,
            hangup_cause=cause,
            recording=self.recording_path is not None,
        )


class CallCenter:
    def __init__(
        self,
        cfg: BoxConfig,
        acd: Acd,
        store: CallStore,
        calls_topic: Topic,
        agents: AgentMediaDirectory,
        agent_name: Callable[[str], str],
    ) -> None:
        self._cfg = cfg
        self._acd = acd
        self._store = store
        self._topic = calls_topic
        self._agents = agents
        self._agent_name = agent_name
        self._live: dict[str, _LiveCall] = {}
        self._tasks: set[asyncio.Task] = set()
        self._accepting = True
        self._stopping = asyncio.Event()
        self._music: dict[str, bytes | None] = {}

    async def prepare(self) -> None:
        """Decode each queue's hold music once, off the event loop."""
        loop = asyncio.get_running_loop()
        for queue in self._cfg.queues:
            self._music[queue.id] = await loop.run_in_executor(None, load_hold_music, queue)

    # --- what the console and the TUI use ---------------------------------------------------
    def live_calls(self) -> list[LiveCallSnapshot]:
        return [lc.snapshot() for lc in self._live.values()]

    def agent_hangup(self, agent_id: str) -> bool:
        for lc in self._live.values():
            if lc.agent_id == agent_id and lc.state is LiveState.ON_CALL:
                lc.agent_hangup.set()
                return True
        return False

    # --- lines hand calls to this -------------------------------------------------------------
    async def handle_inbound(self, call: InboundCall) -> None:
        if not self._accepting:
            await call.hangup(HangupCause.SHUTDOWN)
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        lc = _LiveCall(call, self._route(call))
        self._live[call.call_id] = lc
        call.on_dtmf(lc.dtmf.append)
        log.info("call %s from %s on %s -> queue %s", call.call_id, call.caller.number or call.caller.presentation, call.line_id, lc.queue.id)
        try:
            await self._run(lc)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(call.hangup(HangupCause.SHUTDOWN)), HANGUP_TIMEOUT_S)
            raise
        finally:
            self._live.pop(call.call_id, None)
            if task is not None:
                self._tasks.discard(task)

    def _route(self, call: InboundCall) -> QueueConfig:
        return self._cfg.queues[0]

    def _set_state(self, lc: _LiveCall, state: LiveState, cause: str | None = None) -> None:
        lc.state = state
        lc.since = time.time()
        self._topic.publish(CallUpdate(lc.snapshot(cause)))

    async def _run(self, lc: _LiveCall) -> None:
        call = lc.call
        rec = CallRecord(
            call_id=call.call_id,
            line_id=call.line_id,
            line_kind=str(call.kind),
            direction="inbound",
            from_number=call.caller.number,
            from_name=call.caller.name,
            to_number=call.called,
            queue=lc.queue.id,
            outcome=CallOutcome.FAILED,
            hangup_cause="",
            arrived_at=lc.arrived_at,
        )
        self._set_state(lc, LiveState.ARRIVING)
        if not any(a.state != "logged_out" and lc.queue.id in a.queues for a in self._acd.agents()):
            log.info("call %s: no agent is logged in to queue %s; turning it away", call.call_id, lc.queue.id)
            await call.hangup(HangupCause.NO_AGENT)
            await self._finish(lc, replace(rec, outcome=CallOutcome.NO_AGENT, hangup_cause=HangupCause.NO_AGENT, ended_at=time.time()))
            return
        try:
            await call.progress()
        except CallGone:
            await self._finish(lc, replace(rec, outcome=CallOutcome.ABANDONED, hangup_cause=HangupCause.CANCELLED, ended_at=time.time()))
            return
        waiting_audio = Bridge(call.audio, QueueAudio(lc.queue, self._music.get(lc.queue.id), self._cfg.country), None)
        waiting_audio.start()
        ended = asyncio.ensure_future(call.wait_ended())
        customer_id, customer_name, history = await self._customer(call)
        rec = replace(rec, customer_id=customer_id)
        qc = QueuedCall(call.call_id, lc.queue.id, call.caller, call.line_id, enqueued_at=time.time(),
                        customer_id=customer_id, customer_name=customer_name, history=history)
        lc.queued = qc
        self._acd.enqueue(qc)
        rec = replace(rec, enqueued_at=qc.enqueued_at)
        self._set_state(lc, LiveState.QUEUED)
        try:
            agent_id = await self._wait_for_agent(lc, qc, ended)
        finally:
            await waiting_audio.stop()
        rec = replace(rec, offered_at=qc.first_offered_at, offers=tuple(qc.offers))
        if agent_id is None:
            await self._end_unanswered(lc, rec, ended)
            return
        await self._talk(lc, rec, agent_id, ended)

    async def _customer(self, call: InboundCall) -> tuple[str | None, str | None, tuple[HistoryItem, ...]]:
        """The caller's customer record (created on first contact) and their latest contacts."""
        number = to_e164(call.caller.number, self._cfg.country)
        if number is None:
            return None, None, ()
        try:
            async with asyncio.timeout(CUSTOMER_LOOKUP_TIMEOUT_S):
                customer = await self._store.customer_by_phone(number)
                if customer is None:
                    customer = await self._store.upsert_customer(name=call.caller.name, phones=(number,))
                    return customer.customer_id, customer.name, ()
                items = await self._store.interactions_for_customer(customer.customer_id, limit=HISTORY_ITEMS)
        except TimeoutError:
            log.warning("call %s: customer lookup took over %.0fs; offering without history", call.call_id, CUSTOMER_LOOKUP_TIMEOUT_S)
            return None, None, ()
        history = tuple(HistoryItem(i.kind, i.at, i.summary) for i in items)
        return customer.customer_id, customer.name, history

    async def _wait_for_agent(self, lc: _LiveCall, qc: QueuedCall, ended: asyncio.Future) -> str | None:
        acd_cfg = self._cfg.acd
        deadline = qc.enqueued_at + acd_cfg.max_queue_wait_s
        answer_line_at = qc.enqueued_at + acd_cfg.early_media_max_s
        while True:
            now = time.time()
            if now >= deadline:
                return None
            if not lc.line_answered and now >= answer_line_at:
                log.info("call %s waited %.0fs in early media; answering the line to keep it up", lc.call.call_id, now - qc.enqueued_at)
                await self._answer_line(lc)
            wake = min(deadline, answer_line_at if not lc.line_answered else deadline) - now
            stopping = asyncio.ensure_future(self._stopping.wait())
            offer_changed = asyncio.ensure_future(qc.offer_changed.wait())
            try:
                done, _ = await asyncio.wait({qc.answered, ended, stopping, offer_changed}, timeout=max(wake, 0.01),
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                offer_changed.cancel()
            if ended in done or self._stopping.is_set():
                return None
            if qc.answered in done:
                return None if qc.answered.cancelled() else qc.answered.result()
            qc.offer_changed.clear()
            offered = qc.offered_to is not None
            if offered != (lc.state is LiveState.OFFERED):
                lc.agent_id = qc.offered_to
                lc.agent_name = self._agent_name(qc.offered_to) if qc.offered_to else None
                self._set_state(lc, LiveState.OFFERED if offered else LiveState.QUEUED)

    async def _answer_line(self, lc: _LiveCall) -> None:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            await lc.call.answer()
        lc.line_answered = True

    async def _end_unanswered(self, lc: _LiveCall, rec: CallRecord, ended: asyncio.Future) -> None:
        call = lc.call
        self._acd.withdraw(call.call_id)
        now = time.time()
        if ended.done():
            cause = ended.result()
            outcome = CallOutcome.ABANDONED
            log.info("call %s abandoned after %.1fs in queue (%s)", call.call_id, now - (rec.enqueued_at or now), cause)
        elif self._stopping.is_set():
            ended.cancel()
            cause = HangupCause.SHUTDOWN
            outcome = CallOutcome.NO_AGENT
            log.info("call %s: ended in queue because the box is shutting down", call.call_id)
            await self._hangup(call, cause)
        else:
            ended.cancel()
            cause = HangupCause.NO_AGENT
            outcome = CallOutcome.NO_AGENT
            log.info("call %s: no agent answered within %.0fs; ending it", call.call_id, self._cfg.acd.max_queue_wait_s)
            await self._hangup(call, cause)
        wait = now - rec.enqueued_at if rec.enqueued_at else None
        await self._finish(lc, replace(rec, outcome=outcome, hangup_cause=str(cause), ended_at=now, wait_s=wait))

    async def _talk(self, lc: _LiveCall, rec: CallRecord, agent_id: str, ended: asyncio.Future) -> None:
        call = lc.call
        lc.agent_id, lc.agent_name = agent_id, self._agent_name(agent_id)
        try:
            if not lc.line_answered:
                await self._answer_line(lc)
        except (CallGone, TimeoutError):
            now = time.time()
            log.info("call %s: caller left as agent %s answered", call.call_id, agent_id)
            self._acd.call_ended(agent_id, call.call_id, on_wrapup_done=lambda d: None)
            await self._finish(lc, replace(rec, outcome=CallOutcome.ABANDONED, hangup_cause=HangupCause.CALLER_HUNG_UP, ended_at=now, wait_s=now - (rec.enqueued_at or now), agent_id=agent_id))
            return
        answered_at = time.time()
        rec = replace(rec, answered_at=answered_at, wait_s=answered_at - (rec.enqueued_at or answered_at), agent_id=agent_id, agent_name=lc.agent_name)
        agent_leg = self._agents.media_for(agent_id)
        if agent_leg is None:
            log.warning("agent %s has no audio connected; call %s is bridged to silence", agent_id, call.call_id)
            agent_leg = NullLeg()  # the bridge plays silence for a leg with nothing
        recorder = self._start_recorder(lc, answered_at)
        bridge = Bridge(call.audio, agent_leg, recorder)
        bridge.start()
        self._set_state(lc, LiveState.ON_CALL)
        log.info("call %s answered by agent %s after %.1fs", call.call_id, agent_id, rec.wait_s or 0.0)
        hung_up_by_agent = asyncio.ensure_future(lc.agent_hangup.wait())
        try:
            await self._until_call_ends(lc, bridge, agent_id, ended, hung_up_by_agent)
        finally:
            hung_up_by_agent.cancel()
            if ended.done():
                cause = ended.result()
            else:
                cause = HangupCause.SHUTDOWN if self._stopping.is_set() else HangupCause.AGENT_HUNG_UP
                await self._hangup(call, cause)
                ended.cancel()
            ended_at = time.time()
            stats = await self._stop_bridge(bridge)
            rec = replace(
                rec,
                outcome=CallOutcome.ANSWERED,
                hangup_cause=str(cause),
                ended_at=ended_at,
                talk_s=ended_at - answered_at,
                recording_path=lc.recording_path,
                recording_s=stats,
                dtmf="".join(lc.dtmf),
            )
            log.info("call %s ended: %s after %.1fs talk", call.call_id, cause, rec.talk_s)
            await self._finish(lc, rec)
        self._start_wrapup(agent_id, rec)

    async def _until_call_ends(self, lc: _LiveCall, bridge: Bridge, agent_id: str, ended: asyncio.Future,
                               hung_up_by_agent: asyncio.Future) -> None:
        """Wait for either side to hang up. If the agent's audio connection drops, keep the
        caller (hearing hold music) while the agent's browser reconnects."""
        while True:
            leg = bridge.agent
            lost = asyncio.ensure_future(leg.ended.wait()) if isinstance(getattr(leg, "ended", None), asyncio.Event) else None
            waits = {ended, hung_up_by_agent} | ({lost} if lost else set())
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if lost is not None:
                    lost.cancel()
            if ended.done() or hung_up_by_agent.done() or self._stopping.is_set():
                return
            log.warning("call %s: agent %s lost audio; caller on hold for up to %.0fs while the console reconnects",
                        lc.call.call_id, agent_id, self._cfg.acd.agent_reconnect_s)
            bridge.hold(HoldMusic())
            reconnect = asyncio.ensure_future(self._agents.wait_reconnected(agent_id, leg, self._cfg.acd.agent_reconnect_s))
            await asyncio.wait({ended, hung_up_by_agent, reconnect}, return_when=asyncio.FIRST_COMPLETED)
            if not reconnect.done():
                reconnect.cancel()
                return
            new_leg = reconnect.result()
            if new_leg is None:
                log.warning("call %s: agent %s did not reconnect; ending the call", lc.call.call_id, agent_id)
                lc.agent_hangup.set()
                return
            bridge.replace_agent(new_leg)
            bridge.unhold()
            log.info("call %s: agent %s audio reconnected", lc.call.call_id, agent_id)

    def _start_wrapup(self, agent_id: str, rec: CallRecord) -> None:
        def wrapup_done(disposition: str | None) -> None:
            done_at = time.time()
            final = replace(rec, disposition=disposition, wrapup_ended_at=done_at, wrapup_s=done_at - (rec.ended_at or done_at))
            log.info("call %s wrap-up done: disposition %s", rec.call_id, disposition or "none given")
            task = asyncio.ensure_future(self._save(final))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._acd.call_ended(agent_id, rec.call_id, on_wrapup_done=wrapup_done)

    def _start_recorder(self, lc: _LiveCall, answered_at: float) -> StereoWavRecorder | None:
        if not self._cfg.recording.enabled:
            return None
        if not self._store.recordings_allowed():
            log.warning("call %s is not recorded: recordings are refused (disk nearly full); the call goes on", lc.call.call_id)
            return None
        day = time.strftime("%Y/%m/%d", time.localtime(answered_at))
        rel = f"{day}/{lc.call.call_id}.wav"
        path = self._store.recordings_dir() / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = StereoWavRecorder(path, sink_factory=self._store.recording_sink_factory())
        except OSError as exc:
            log.warning("call %s is not recorded: cannot create %s (%s)", lc.call.call_id, path, exc.strerror or exc)
            return None
        lc.recording_path = rel
        return recorder

    async def _stop_bridge(self, bridge: Bridge) -> float | None:
        try:
            async with asyncio.timeout(BRIDGE_STOP_TIMEOUT_S):
                stats = await bridge.stop()
        except TimeoutError:
            log.warning("recording did not finalise within %.0fs; it will be repaired at next start", BRIDGE_STOP_TIMEOUT_S)
            return None
        return stats.recorder.seconds_written if stats.recorder is not None else None

    async def _hangup(self, call: InboundCall, cause: HangupCause) -> None:
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT_S):
                await call.hangup(cause)
        except TimeoutError:
            log.warning("line %s did not confirm hang-up of call %s within %.0fs", call.line_id, call.call_id, HANGUP_TIMEOUT_S)

    async def _finish(self, lc: _LiveCall, rec: CallRecord) -> None:
        lc.state = LiveState.ENDED
        self._topic.publish(CallUpdate(lc.snapshot(rec.hangup_cause)))
        await self._save(rec)

    async def _save(self, rec: CallRecord) -> None:
        try:
            await self._store.save_call(rec)
        except Exception:
            log.exception("could not store the record of call %s", rec.call_id)

    # --- shutdown ---------------------------------------------------------------------------------
    async def shutdown(self, timeout: float) -> None:
        """Stop taking calls, hang up the live ones and finalise their recordings."""
        self._accepting = False
        self._stopping.set()
        tasks = [t for t in self._tasks if not t.done()]
        for lc in list(self._live.values()):
            if lc.state is LiveState.ON_CALL:
                lc.agent_hangup.set()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
