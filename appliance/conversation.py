"""The answered part of a call: one bridge and one recorder for the caller, a chain of party segments.

The caller's leg stays on the bridge's customer side from the first answer to the end,
so the recording is continuous (left = caller; right = whoever is connected, silent
while the caller is on hold). Agents and external parties come and go on the agent side
through ``TransferControl``. Everything runs in the call's task; other tasks and the
console only ``post`` messages into its bounded inbox.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from appliance.acd.router import QueuedCall
from appliance.call_events import CallUpdate, LiveState
from appliance.agent_audio_watch import AgentAudioWatch, LegBack, LegLost
from appliance.call_controls import CallerHold, CallerKeys, ControlError
from appliance.call_support import hang_up, stop_bridge
from appliance.lines import HangupCause, InboundCall, OutboundCall
from appliance.live_call import (
    CallServices,
    LiveCall,
    Segment,
    segment_call_id,
    segment_record,
    unanswered_segment_record,
)
from appliance.records import CallOutcome, CallRecord
from appliance.transfer import TRANSFER_IN_PROGRESS, Phase, TransferControl
from appliance.transfer_requests import TransferError, TransferNotice, TransferRequest
from media.bridge import Bridge, NullLeg
from media.recorder import StereoWavRecorder

log = logging.getLogger(__name__)

INBOX_SIZE = 32  # messages waiting for the call's task; a handful are ever outstanding
REQUEST_SLOTS = 8  # console requests may fill only this much of the inbox: internal messages always fit


@dataclass(frozen=True, slots=True)
class AgentHangup:
    agent_id: str


@dataclass(frozen=True, slots=True)
class AgentHold:
    agent_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class ExternalEnded:
    out: OutboundCall
    cause: HangupCause


class Conversation(AgentAudioWatch):
    def __init__(self, svc: CallServices, lc: LiveCall, base: CallRecord, recorder: StereoWavRecorder | None,
                 ended: asyncio.Future[HangupCause]) -> None:
        self.svc = svc
        self.lc = lc
        self.call: InboundCall = lc.call
        self.call_id = lc.call.call_id
        self.base = base
        self.ended = ended
        self.bridge = Bridge(lc.call.audio, NullLeg(), recorder, name=f"call:{self.call_id}")
        self.transfers = TransferControl(self)
        self.keys = CallerKeys(lc.call, f"call {self.call_id}")
        self.hold = CallerHold(self.bridge, lc.call, lambda: svc.hold_source(lc.queue), f"call {self.call_id}")
        self.owner: str | None = None  # the agent the caller belongs to now (None: external party or nobody)
        self.segment: Segment | None = None
        self.last_n = 0
        self._external: OutboundCall | None = None
        self._dtmf_from = 0
        self._inbox: asyncio.Queue[object] = asyncio.Queue(INBOX_SIZE)
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._give_up_at: float | None = None
        self.notices: dict[str, TransferNotice] = {}  # agent id -> the transfer in progress they were last told of

    # --- the console's side (runs in other tasks: only checks and posts) ------------------------
    @property
    def caller_label(self) -> str:
        return self.call.caller.number or self.call.caller.name or "a withheld number"

    @property
    def next_call_id(self) -> str:
        return segment_call_id(self.call_id, self.last_n + 1)

    def involves(self, agent_id: str) -> bool:
        return agent_id == self.owner or self.transfers.involves(agent_id)

    def request(self, req: TransferRequest) -> None:
        self.transfers.check(req)
        if self._inbox.qsize() >= REQUEST_SLOTS:
            raise TransferError("the call is busy with earlier requests; try again")
        self.post(req)

    def hangup_by(self, agent_id: str) -> bool:
        if not self.involves(agent_id):
            return False
        self.post(AgentHangup(agent_id))
        return True

    def hold_by(self, agent_id: str, on: bool) -> None:
        """The agent pressed Hold or Resume. ControlError when it is not theirs to do now."""
        self._check_owner(agent_id)
        self.post(AgentHold(agent_id, on))

    async def keys_by(self, agent_id: str, digits: str) -> None:
        """The agent pressed keys on the console's keypad: DTMF to the caller's line."""
        self._check_owner(agent_id)
        await self.keys.send(digits, still=lambda: self.owner == agent_id and self.transfers.phase is Phase.TALKING)

    def _check_owner(self, agent_id: str) -> None:
        if agent_id != self.owner:
            raise ControlError("you have no call in progress")
        if self.transfers.phase is not Phase.TALKING:
            raise ControlError("the caller is with the transfer now; finish or cancel it first")

    def post(self, msg: object) -> None:
        try:
            self._inbox.put_nowait(msg)
        except asyncio.QueueFull:
            log.error("call %s: inbox full; dropped %s", self.call_id, type(msg).__name__)

    # --- the call's task --------------------------------------------------------------------------
    async def run(self, agent_id: str, answered_at: float) -> None:
        """Bridge the caller with the agent who answered; return when the call has ended."""
        self.bridge.start()
        try:
            self._connect(agent_id, answered_at, transferred_from=None)
            cause, hang_up_line = await self._loop()
            await self._end(cause, hang_up_line)
        except asyncio.CancelledError:
            # the box gave up waiting for this call at shutdown: still close the recording and
            # stop our clocks and helpers; the caller's line is hung up by CallCenter
            for task in list(self._tasks):
                task.cancel()
            consult, self.transfers.consult = self.transfers.consult, None
            jobs = [stop_bridge(self.bridge), self.hold.close()] + ([consult.stop()] if consult is not None else [])
            await asyncio.shield(asyncio.gather(*jobs, return_exceptions=True))
            raise

    async def _loop(self) -> tuple[HangupCause, bool]:
        stopping = asyncio.ensure_future(self.svc.stopping.wait())
        try:
            while True:
                getter = asyncio.ensure_future(self._inbox.get())
                timeout = None if self._give_up_at is None else max(0.0, self._give_up_at - time.time())
                done, _ = await asyncio.wait({getter, self.ended, stopping}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                if self.ended in done:
                    return self.ended.result(), False
                if stopping in done:
                    return HangupCause.SHUTDOWN, True
                if not done:
                    log.info("call %s: nobody took the transferred call within %.0fs; ending it",
                             self.call_id, self.svc.cfg.acd.max_queue_wait_s)
                    return HangupCause.NO_AGENT, True
                result = await self._handle(getter.result())
                if result is not None:
                    return result, True
        finally:
            stopping.cancel()

    async def _handle(self, msg: object) -> HangupCause | None:
        """One message; returns a cause when it ends the call."""
        phase = self.transfers.phase
        if isinstance(msg, AgentHangup):
            if phase is Phase.CONSULTING and msg.agent_id == self.transfers.consultee:
                await self.transfers.cancel_consult(f"{self.svc.agent_name(msg.agent_id)} hung up")
            elif phase is Phase.CONSULTING and msg.agent_id == self.owner:
                await self.transfers.complete()  # hanging up during a consult hands the caller over
            elif msg.agent_id == self.owner:
                return HangupCause.AGENT_HUNG_UP
            return None
        if isinstance(msg, AgentHold):
            self._agent_hold(msg)
            return None
        if isinstance(msg, LegLost):
            self._leg_lost(msg)
            return None
        if isinstance(msg, LegBack):
            return self._leg_back(msg)
        if isinstance(msg, ExternalEnded):
            return HangupCause.FAR_END_HUNG_UP if msg.out is self._external else None
        await self.transfers.handle(msg)
        return None

    async def _end(self, cause: HangupCause, hang_up_line: bool) -> None:
        outcome = CallOutcome.ABANDONED if self.ended.done() else CallOutcome.NO_AGENT
        if hang_up_line:
            if not self.ended.done():
                self.ended.cancel()
            await self._hangup_line(cause)
        await self.transfers.caller_left(str(cause), str(outcome))
        self._stop_watch()
        if self._external is not None:
            await self.hangup_outbound(self._external, HangupCause.CALLER_HUNG_UP if not hang_up_line else cause)
        recording_s = await stop_bridge(self.bridge)
        ended_at = time.time()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        seg, rec = self.segment, None
        if seg is not None:
            await self.hold.close()
            rec = segment_record(self.base, seg, ended_at=ended_at, cause=str(cause), recording_s=recording_s,
                                 dtmf=self._dtmf(), **self.hold.take_fields())
            log.info("call %s ended: %s after %.1fs talk (segment %d)", self.call_id, cause, rec.talk_s or 0.0, seg.n)
            await self.svc.save(rec)  # stored before "ended" is published: the TUI's lists find it
        self.svc.set_state(self.lc, LiveState.ENDED, str(cause))
        if seg is not None and rec is not None and seg.agent_id is not None:
            self.svc.start_wrapup(seg.agent_id, rec)

    # --- what TransferControl uses -------------------------------------------------------------
    def hold_caller(self) -> None:
        """The caller hears the queue's hold music; nobody is on the agent side."""
        self._stop_watch()
        self.hold.handed_over()
        self._show_hold()
        self.bridge.replace_agent(NullLeg())
        self.bridge.hold(self.svc.hold_source(self.lc.queue))

    def connect_agent(self, agent_id: str, *, transferred_from: str | None, enqueued_at: float | None = None,
                      offers: tuple[str, ...] = ()) -> None:
        self._connect(agent_id, time.time(), transferred_from, enqueued_at, offers)

    def _connect(self, agent_id: str, answered_at: float, transferred_from: str | None,
                 enqueued_at: float | None = None, offers: tuple[str, ...] = ()) -> None:
        self.last_n += 1
        name = self.svc.agent_name(agent_id)
        self.segment = Segment(self.last_n, segment_call_id(self.call_id, self.last_n), answered_at, self.lc.queue.id,
                               agent_id=agent_id, agent_name=name, transferred_from=transferred_from,
                               enqueued_at=enqueued_at, offers=offers)
        self.owner, self._give_up_at, self._dtmf_from = agent_id, None, len(self.lc.dtmf)
        self.notices.clear()  # whatever transfer was going on is over
        self._bridge_owner()
        self.lc.segment, self.lc.agent_id, self.lc.agent_name = self.last_n, agent_id, name
        self.svc.set_state(self.lc, LiveState.ON_CALL)
        if self.last_n > 1:
            log.info("call %s: segment %d with agent %s (from %s)", self.call_id, self.last_n, agent_id, transferred_from)

    def connect_external(self, out: OutboundCall, number: str, *, transferred_from: str | None) -> None:
        self.last_n += 1
        self.segment = Segment(self.last_n, segment_call_id(self.call_id, self.last_n), time.time(), self.lc.queue.id,
                               number=number, transferred_from=transferred_from)
        self.owner, self._external, self._dtmf_from = None, out, len(self.lc.dtmf)
        self.bridge.replace_agent(out.audio)
        self.bridge.unhold()
        self.hold.connected()
        self.lc.segment, self.lc.agent_id, self.lc.agent_name = self.last_n, None, number
        self.svc.set_state(self.lc, LiveState.ON_CALL)
        self._spawn(self._watch_external(out), f"external-ended:{self.call_id}")
        log.info("call %s: segment %d with %s (from %s)", self.call_id, self.last_n, number, transferred_from)

    def back_to_owner(self) -> None:
        self._bridge_owner()
        self.svc.publish(CallUpdate(self.lc.snapshot()))

    def _bridge_owner(self) -> None:
        agent_id = self.owner or ""
        leg = self.svc.agents.media_for(agent_id)
        if leg is None:
            log.warning("agent %s has no audio connected; call %s is bridged to silence", agent_id, self.call_id)
            leg = NullLeg()
        self.bridge.replace_agent(leg)
        self.bridge.unhold()
        self.hold.connected()
        self._watch_leg(agent_id, leg)

    def end_segment(self, cause: str, *, transfer: str = "", transferred_to: str | None = None) -> CallRecord | None:
        """The current party's segment ends now (transfer): store it and start the agent's wrap-up."""
        seg, self.segment, self.owner = self.segment, None, None
        self._stop_watch()
        if seg is None:
            return None
        if self.lc.agent_id == seg.agent_id:  # the call is nobody's until the next party takes it: the
            self.lc.agent_id = self.lc.agent_name = None  # agent's console gets no more updates for it
        rec = segment_record(self.base, seg, ended_at=time.time(), cause=cause, transfer=transfer,
                             transferred_to=transferred_to, dtmf=self._dtmf(), **self.hold.take_fields())
        self.svc.save_later(rec)
        if seg.agent_id is not None:
            self.svc.start_wrapup(seg.agent_id, rec)
        log.info("call %s: segment %d (%s) ended: %s to %s", self.call_id, seg.n, seg.agent_id or seg.number, transfer, transferred_to)
        return rec

    def new_queued_call(self, queue_id: str, *, target: str | None = None, kind: str = "call",
                        from_agent: str | None = None, priority: int = 0) -> QueuedCall:
        first = self.lc.queued
        return QueuedCall(self.next_call_id, queue_id, self.call.caller, self.call.line_id, enqueued_at=time.time(),
                          customer_id=first.customer_id if first else None,
                          customer_name=first.customer_name if first else None,
                          history=first.history if first else (), priority=priority, target=target, kind=kind,
                          from_agent=from_agent)

    def queued_for_transfer(self, qc: QueuedCall) -> None:
        self._give_up_at = qc.enqueued_at + self.svc.cfg.acd.max_queue_wait_s
        self.lc.agent_id = self.lc.agent_name = None
        self.svc.set_state(self.lc, LiveState.QUEUED)

    def transfer_abandoned(self, offer: QueuedCall, from_agent: str | None, queue_changed: bool, cause: str,
                           outcome: str) -> None:
        rec = unanswered_segment_record(self.base, self.last_n + 1, offer.call_id, offer.queue_id,
                                        offer.enqueued_at if queue_changed else None, from_agent, tuple(offer.offers),
                                        time.time(), cause, CallOutcome(outcome))
        self.svc.save_later(rec)

    def transfer_phase_changed(self, phase: str | None) -> None:
        self.lc.transfer = phase
        self.svc.publish(CallUpdate(self.lc.snapshot()))

    def notify(self, agent_id: str, state: str, role: str, peer: str | None, message: str) -> None:
        if agent_id:
            notice = TransferNotice(self.call_id, agent_id, state, role, peer, self.call.caller.number, message)
            if state in TRANSFER_IN_PROGRESS:
                self.notices[agent_id] = notice  # a console that reloads now is shown it again
            else:
                self.notices.pop(agent_id, None)
            self.svc.publish(notice)

    async def hangup_outbound(self, out: OutboundCall, cause: HangupCause) -> None:
        await hang_up(out, cause)

    # --- the agent's hold ------------------------------------------------------------------------
    def _agent_hold(self, msg: AgentHold) -> None:
        if msg.agent_id != self.owner or self.transfers.phase is not Phase.TALKING or msg.on == self.hold.held:
            return  # the situation changed since the console asked (a transfer, a second click)
        if msg.on:
            self.hold.hold()
        else:
            self.hold.resume()
        self._show_hold()

    def _show_hold(self) -> None:
        if self.lc.on_hold != self.hold.held:
            self.lc.on_hold = self.hold.held
            self.svc.publish(CallUpdate(self.lc.snapshot()))

    # --- external party ------------------------------------------------------------------------
    async def _watch_external(self, out: OutboundCall) -> None:
        self.post(ExternalEnded(out, await out.wait_ended()))

    def _spawn(self, coro, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- helpers ------------------------------------------------------------------------------
    def _dtmf(self) -> str:
        return "".join(self.lc.dtmf[self._dtmf_from:])

    async def _hangup_line(self, cause: HangupCause) -> None:
        await hang_up(self.call, cause)
