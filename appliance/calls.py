"""The inbound call flow: line -> queue -> offer -> answer -> conversation (bridge, record, transfers).

``CallCenter.handle_inbound`` is the ``IncomingCallHandler`` every line driver is given.
One task runs each call from arrival to its stored records; the ACD decides who answers.
This module owns the part before the first answer; ``appliance.conversation`` owns the
answered part (one bridge and recorder, a record and a wrap-up per party segment) and
``appliance.transfer`` moves the caller between agents, queues and external numbers.
The console's transfer requests enter through ``transfer``/``consult``/... here.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any, Callable

from appliance.acd.router import Acd, QueuedCall
from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from appliance.config import BoxConfig, QueueConfig
from appliance.conversation import Conversation
from appliance.hub import Topic
from appliance.ivr import TargetKind
from appliance.ivr_config import route
from appliance.ivr_flow import Menus
from appliance.lines import CallGone, HangupCause, InboundCall
from appliance.call_support import (HANGUP_TIMEOUT_S, AnswerFailed, CallStore, customer_context, hang_up, save_record,
                                    start_recorder)
from appliance.live_call import AgentMediaDirectory, DialExternal, LiveCall
from appliance.records import CallOutcome, CallRecord
from appliance.transfer_requests import (
    BlindTransfer, CancelConsult, CompleteTransfer, Consult, Retrieve, Target, TransferError, TransferNotice,
)
from media.bridge import Bridge
from media.call_audio import QueueAudio, load_hold_music
from media.tones import FrameSource, HoldMusic, PcmLoop

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 10.0  # the line must confirm our answer (SIP ACK, modem OK) within this


class CallCenter:
    def __init__(
        self,
        cfg: BoxConfig,
        acd: Acd,
        store: CallStore,
        calls_topic: Topic,
        agents: AgentMediaDirectory,
        agent_name: Callable[[str], str],
        dial_external: DialExternal | None = None,
    ) -> None:
        self.cfg = self._cfg = cfg
        self.acd = self._acd = acd
        self._store = store
        self._topic = calls_topic
        self.agents = self._agents = agents
        self._agent_name = agent_name
        self.dial_external = dial_external  # places the outbound leg of a transfer to a number (None: no line)
        self._live: dict[str, LiveCall] = {}
        self._tasks: set[asyncio.Task] = set()
        self._accepting = True
        self.stopping = self._stopping = asyncio.Event()
        self._music: dict[str, bytes | None] = {}
        self._menus = Menus(cfg)

    async def prepare(self) -> None:
        """Decode each queue's hold music and each menu's prompts once, off the event loop."""
        loop = asyncio.get_running_loop()
        for queue in self._cfg.queues:
            self._music[queue.id] = await loop.run_in_executor(None, load_hold_music, queue)
        await self._menus.prepare()

    # --- what the console and the TUI use ---------------------------------------------------
    def live_calls(self) -> list[LiveCallSnapshot]:
        return [lc.snapshot() for lc in self._live.values()]

    def conversation(self, call_id: str) -> Conversation | None:
        """The answered part of a live call (its bridge, segments and transfer), if it has one."""
        lc = self._live.get(call_id)
        return lc.conversation if lc is not None else None

    def agent_hangup(self, agent_id: str) -> bool:
        """The agent pressed hang up: ends their call, or their side of a consult."""
        return any(lc.conversation.hangup_by(agent_id) for lc in self._live.values() if lc.conversation is not None)

    def agent_hold(self, agent_id: str, on: bool) -> bool:
        """Hold (``on``) or resume the agent's caller; False when the agent has no answered call.
        ControlError when it cannot be done now (during a transfer)."""
        conv = self._owned_by(agent_id)
        if conv is None:
            return False
        conv.hold_by(agent_id, on)
        return True

    async def agent_keys(self, agent_id: str, digits: str) -> bool:
        """DTMF from the agent's keypad to the caller; False when the agent has no answered call."""
        conv = self._owned_by(agent_id)
        if conv is None:
            return False
        await conv.keys_by(agent_id, digits)
        return True

    def transfer_shown(self, agent_id: str) -> TransferNotice | None:
        """The transfer in progress this agent's console shows (a page reload gets it again)."""
        return next((lc.conversation.notices[agent_id] for lc in self._live.values()
                     if lc.conversation is not None and agent_id in lc.conversation.notices), None)

    def _owned_by(self, agent_id: str) -> Conversation | None:
        return next((lc.conversation for lc in self._live.values()
                     if lc.conversation is not None and lc.conversation.owner == agent_id), None)

    def transfer(self, agent_id: str, call_id: str | None, target: Target) -> None:
        """Blind transfer to an agent, a queue or a number. Raises TransferError (shown to the agent)."""
        self._conversation(agent_id, call_id).request(BlindTransfer(agent_id, target))

    def consult(self, agent_id: str, call_id: str | None, to_agent: str) -> None:
        self._conversation(agent_id, call_id).request(Consult(agent_id, to_agent))

    def complete_transfer(self, agent_id: str, call_id: str | None) -> None:
        self._conversation(agent_id, call_id).request(CompleteTransfer(agent_id))

    def cancel_consult(self, agent_id: str, call_id: str | None) -> None:
        self._conversation(agent_id, call_id).request(CancelConsult(agent_id))

    def retrieve(self, agent_id: str, call_id: str | None) -> None:
        self._conversation(agent_id, call_id).request(Retrieve(agent_id))

    def _conversation(self, agent_id: str, call_id: str | None) -> Conversation:
        for lc in self._live.values():
            conv = lc.conversation
            if conv is not None and conv.owner == agent_id and call_id in (None, "", lc.call.call_id, conv.segment and conv.segment.call_id):
                return conv
        raise TransferError("you have no call to transfer")

    # --- what a call's conversation uses (CallServices) --------------------------------------
    def agent_name(self, agent_id: str) -> str:
        return self._agent_name(agent_id)

    def queue_config(self, queue_id: str) -> QueueConfig | None:
        return next((q for q in self._cfg.queues if q.id == queue_id), None)

    def hold_source(self, queue: QueueConfig) -> FrameSource:
        music = self._music.get(queue.id)
        return PcmLoop(music) if music else HoldMusic()

    def publish(self, event: Any) -> None:
        self._topic.publish(event)

    def set_state(self, lc: LiveCall, state: LiveState, cause: str | None = None) -> None:
        self._set_state(lc, state, cause)

    async def save(self, rec: CallRecord) -> None:
        await self._save(rec)

    def save_later(self, rec: CallRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._save(rec), name=f"save-call:{rec.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lines hand calls to this -------------------------------------------------------------
    async def handle_inbound(self, call: InboundCall) -> None:
        if not self._accepting:
            await call.hangup(HangupCause.SHUTDOWN)
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        lc = self._route(call)
        self._live[call.call_id] = lc
        call.on_dtmf(lc.add_dtmf)
        log.info("call %s from %s on %s to %s -> %s", call.call_id, call.caller.number or call.caller.presentation, call.line_id,
                 call.called or "-", f"menu {lc.menu}" if lc.menu else f"queue {lc.queue.id}")
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

    def _route(self, call: InboundCall) -> LiveCall:
        """The first matching [[inbound]] rule's queue or menu; no match: the first queue."""
        first = self._cfg.queues[0]
        rule = route(self._cfg.inbound, call.called, call.line_id)
        if rule is not None and rule.target.kind is TargetKind.MENU:
            return LiveCall(call, first, menu=rule.target.id)
        return LiveCall(call, self.queue_config(rule.target.id) or first if rule is not None else first)

    def _logged_in(self, queue_id: str | None) -> bool:
        """Someone is logged in to ``queue_id`` (None: to any queue)."""
        return any(a.state != "logged_out" and (queue_id is None or queue_id in a.queues) for a in self._acd.agents())

    def _set_state(self, lc: LiveCall, state: LiveState, cause: str | None = None) -> None:
        lc.state = state
        lc.since = time.time()
        self._topic.publish(CallUpdate(lc.snapshot(cause)))

    async def _run(self, lc: LiveCall) -> None:
        call = lc.call
        rec = CallRecord(
            call_id=call.call_id,
            line_id=call.line_id,
            line_kind=str(call.kind),
            direction="inbound",
            from_number=call.caller.number,
            from_name=call.caller.name,
            to_number=call.called,
            queue=None if lc.menu else lc.queue.id,
            outcome=CallOutcome.FAILED,
            hangup_cause="",
            arrived_at=lc.arrived_at,
            parent_call_id=call.call_id,
        )
        self._set_state(lc, LiveState.ARRIVING)
        ended = asyncio.ensure_future(call.wait_ended())
        try:
            await self._queue_call(lc, rec, ended)
        finally:
            ended.cancel()  # no-op once it is done (the conversation has awaited it)

    async def _queue_call(self, lc: LiveCall, rec: CallRecord, ended: asyncio.Future) -> None:
        call = lc.call
        if not self._logged_in(None if lc.menu else lc.queue.id):  # before a menu: nobody logged in at all
            await self._turn_away(lc, rec)
            return
        if lc.menu is not None:
            chosen = await self._menus.serve(self, lc, rec, ended)
            if chosen is None:
                return
            rec = chosen
            if not self._logged_in(lc.queue.id):  # the queue the caller chose: nothing more to play
                await self._turn_away(lc, rec)
                return
        else:
            try:
                await call.progress()
            except CallGone:
                await self.finish(lc, replace(rec, outcome=CallOutcome.ABANDONED, hangup_cause=HangupCause.CANCELLED, ended_at=time.time()))
                return
        waiting_audio = Bridge(call.audio, QueueAudio(lc.queue, self._music.get(lc.queue.id), self._cfg.country), None)
        waiting_audio.start()
        customer = await customer_context(self._store, call.caller.number, self._cfg.country, call.caller.name, call.call_id)
        rec = replace(rec, customer_id=customer.customer_id)
        qc = QueuedCall(call.call_id, lc.queue.id, call.caller, call.line_id, enqueued_at=time.time(),
                        customer_id=customer.customer_id, customer_name=customer.name, history=customer.history)
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

    async def _turn_away(self, lc: LiveCall, rec: CallRecord) -> None:
        where = f"queue {lc.queue.id}" if lc.menu is None else "any queue"
        log.info("call %s: no agent is logged in to %s; turning it away", lc.call.call_id, where)
        await hang_up(lc.call, HangupCause.NO_AGENT)
        ended_at = time.time()
        # a missed contact belongs in the customer's history (someone may call them back)
        call = lc.call
        customer = await customer_context(self._store, call.caller.number, self._cfg.country, call.caller.name, call.call_id)
        await self.finish(lc, replace(rec, outcome=CallOutcome.NO_AGENT, hangup_cause=HangupCause.NO_AGENT,
                                      ended_at=ended_at, customer_id=customer.customer_id))

    async def _wait_for_agent(self, lc: LiveCall, qc: QueuedCall, ended: asyncio.Future) -> str | None:
        acd_cfg = self._cfg.acd
        deadline = qc.enqueued_at + acd_cfg.max_queue_wait_s
        answer_line_at = qc.enqueued_at + acd_cfg.early_media_max_s
        while True:
            now = time.time()
            if now >= deadline:
                return None
            if not lc.line_answered and now >= answer_line_at:
                log.info("call %s waited %.0fs in early media; answering the line to keep it up", lc.call.call_id, now - qc.enqueued_at)
                try:
                    await self.answer_line(lc)
                except CallGone:
                    pass  # ``ended`` completes: the caller left
                except AnswerFailed:
                    return None
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

    async def answer_line(self, lc: LiveCall) -> None:
        """Answer the caller's line. ``CallGone`` when the caller left; ``AnswerFailed`` (the line is
        then hung up, so the caller is not left ringing) when the line did not confirm in time."""
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await lc.call.answer()
        except TimeoutError:
            log.warning("call %s: line %s did not confirm our answer within %.0fs (a SIP caller that does not "
                        "acknowledge our responses, or a modem that does not answer); hanging up. If this "
                        "repeats, check that line's equipment or the caller's SIP settings",
                        lc.call.call_id, lc.call.line_id, ANSWER_TIMEOUT_S)
            lc.answer_failed = True
            await hang_up(lc.call, HangupCause.TIMEOUT)
            raise AnswerFailed(lc.call.call_id) from None
        lc.line_answered = True

    async def _end_unanswered(self, lc: LiveCall, rec: CallRecord, ended: asyncio.Future) -> None:
        call = lc.call
        self._acd.withdraw(call.call_id)
        now = time.time()
        if lc.answer_failed:  # the line was hung up when it did not confirm our answer
            ended.cancel()
            cause, outcome = HangupCause.TIMEOUT, CallOutcome.FAILED
        elif ended.done():
            cause = ended.result()
            outcome = CallOutcome.ABANDONED
            log.info("call %s abandoned after %.1fs in queue (%s)", call.call_id, now - (rec.enqueued_at or now), cause)
        elif self._stopping.is_set():
            ended.cancel()
            cause = HangupCause.SHUTDOWN
            outcome = CallOutcome.NO_AGENT
            log.info("call %s: ended in queue because the box is shutting down", call.call_id)
            await hang_up(call, cause)
        else:
            ended.cancel()
            cause = HangupCause.NO_AGENT
            outcome = CallOutcome.NO_AGENT
            log.info("call %s: no agent answered within %.0fs; ending it", call.call_id, self._cfg.acd.max_queue_wait_s)
            await hang_up(call, cause)
        wait = now - rec.enqueued_at if rec.enqueued_at else None
        await self.finish(lc, replace(rec, outcome=outcome, hangup_cause=str(cause), ended_at=now, wait_s=wait))

    async def _talk(self, lc: LiveCall, rec: CallRecord, agent_id: str, ended: asyncio.Future) -> None:
        call = lc.call
        lc.agent_id, lc.agent_name = agent_id, self._agent_name(agent_id)
        try:
            if not lc.line_answered:
                await self.answer_line(lc)
        except (CallGone, AnswerFailed) as exc:
            now = time.time()
            failed = isinstance(exc, AnswerFailed)
            if not failed:
                log.info("call %s: caller left as agent %s answered", call.call_id, agent_id)
            self._acd.call_ended(agent_id, call.call_id, on_wrapup_done=lambda d: None)
            await self.finish(lc, replace(rec, outcome=CallOutcome.FAILED if failed else CallOutcome.ABANDONED,
                                          hangup_cause=HangupCause.TIMEOUT if failed else HangupCause.CALLER_HUNG_UP,
                                          ended_at=now, wait_s=now - (rec.enqueued_at or now), agent_id=agent_id))
            return
        answered_at = time.time()
        recorder, lc.recording_path = start_recorder(self._cfg.recording.enabled, self._store, call.call_id, answered_at)
        rec = replace(rec, wait_s=answered_at - (rec.enqueued_at or answered_at), recording_path=lc.recording_path)
        log.info("call %s answered by agent %s after %.1fs", call.call_id, agent_id, rec.wait_s or 0.0)
        lc.conversation = Conversation(self, lc, rec, recorder, ended)
        await lc.conversation.run(agent_id, answered_at)

    def start_wrapup(self, agent_id: str, rec: CallRecord) -> None:
        def wrapup_done(disposition: str | None) -> None:
            done_at = time.time()
            final = replace(rec, disposition=disposition, wrapup_ended_at=done_at, wrapup_s=done_at - (rec.ended_at or done_at))
            log.info("call %s wrap-up done: disposition %s", rec.call_id, disposition or "none given")
            self.save_later(final)

        self._acd.call_ended(agent_id, rec.call_id, on_wrapup_done=wrapup_done)

    async def finish(self, lc: LiveCall, rec: CallRecord) -> None:
        await self._save(rec)  # stored first: whoever reacts to "ended" (the TUI's lists) finds the record
        lc.state = LiveState.ENDED
        self._topic.publish(CallUpdate(lc.snapshot(rec.hangup_cause)))

    async def _save(self, rec: CallRecord) -> None:
        await save_record(self._store, rec)

    # --- shutdown ---------------------------------------------------------------------------------
    async def shutdown(self, timeout: float) -> None:
        """Stop taking calls, hang up the live ones and finalise their recordings."""
        self._accepting = False
        self._stopping.set()
        tasks = [t for t in self._tasks if not t.done()]  # answered calls end on ``stopping``
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
