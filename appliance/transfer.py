"""Call transfer between agents, to a queue or to an external number (blind and attended).

The box is a B2BUA: the caller's leg never leaves the call's one ``Bridge`` (and its one
recorder). A transfer only changes who is on the bridge's agent side:

* blind to an agent: caller on hold music, the agent gets a directed offer, the
  transferring agent's segment ends at once (wrap-up). Answered: bridged. Not answered:
  the call goes back to the front of its queue.
* blind to a queue: caller on hold music and re-enqueued ahead of new calls.
* blind to a number: caller on hold music while it rings; the agent stays until the
  number answers (then wrap-up) or fails (then the agent has the caller back).
* attended (consult): caller on hold, the consulted agent gets a consult offer; once
  answered the two agents talk on a second bridge (not recorded). Complete: the
  consulted agent takes the caller. Cancel (or the consulted agent hangs up): the first
  agent has the caller back. Not answered: the caller stays on hold until ``retrieve``.

Everything here runs in the call's own task (``Conversation``); console requests reach it
as messages, so there is one owner of the bridge and no locking.
"""
from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import TYPE_CHECKING

from appliance.acd.router import AcdError, QueuedCall
from appliance.lines import DialFailed, DialFailure, HangupCause, OutboundCall
from appliance.transfer_requests import (
    BlindTransfer, CancelConsult, CompleteTransfer, Consult, DialAnswered, DialNotAnswered, OfferAnswered,
    OfferUnanswered, Retrieve, Target, ToAgent, ToNumber, ToQueue, TransferError, TransferRequest,
)
from media.bridge import Bridge, NullLeg

if TYPE_CHECKING:
    from appliance.conversation import Conversation

log = logging.getLogger(__name__)

# the far end of an external transfer must answer within this; a mobile rings ~45-60 s
# before its voicemail answers, and a caller on hold should not wait longer than that
EXTERNAL_ANSWER_TIMEOUT_S = 45.0
CONSULT_STOP_TIMEOUT_S = 2.0  # the consult bridge has no recorder: its clock stops at the next await


class Phase(StrEnum):
    TALKING = "talking"  # caller <-> the current party
    DIALING = "dialing"  # caller on hold; an external number rings; the agent still owns the call
    TRANSFERRING = "transferring"  # caller on hold; a blind transfer rings an agent or waits in a queue
    CONSULT_RINGING = "consult_ringing"  # caller on hold; the consulted agent's offer rings
    CONSULTING = "consulting"  # caller on hold; the two agents talk
    HELD = "held"  # a consult was not answered: the caller waits until the agent retrieves


# the phases an agent's console shows a transfer box for (the same strings go in TransferNotice.state)
TRANSFER_IN_PROGRESS = frozenset({str(Phase.DIALING), str(Phase.CONSULT_RINGING), str(Phase.CONSULTING),
                                  str(Phase.HELD)})

_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.TALKING: frozenset({Phase.DIALING, Phase.TRANSFERRING, Phase.CONSULT_RINGING}),
    Phase.DIALING: frozenset({Phase.TALKING}),
    Phase.TRANSFERRING: frozenset({Phase.TALKING, Phase.TRANSFERRING}),
    Phase.CONSULT_RINGING: frozenset({Phase.CONSULTING, Phase.HELD, Phase.TALKING}),
    Phase.CONSULTING: frozenset({Phase.TALKING}),
    Phase.HELD: frozenset({Phase.TALKING, Phase.DIALING, Phase.TRANSFERRING, Phase.CONSULT_RINGING}),
}


class TransferControl:
    """The transfer in progress on one answered call; driven by its ``Conversation``."""

    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self.phase = Phase.TALKING
        self.offer: QueuedCall | None = None  # the directed offer or queue entry looking for the next party
        self.offer_from: str | None = None  # the agent who handed the caller on (for the next segment)
        self.offer_queue_changed = False  # the next segment entered another queue (counts there as offered)
        self.consult: Bridge | None = None
        self.consultee: str | None = None
        self._dial: asyncio.Task[None] | None = None
        self._dial_number: str | None = None
        self._out: OutboundCall | None = None

    # --- state --------------------------------------------------------------------------------
    def _go(self, dst: Phase, why: str) -> None:
        if dst not in _ALLOWED[self.phase]:
            raise TransferError(f"cannot go from {self.phase} to {dst}")
        log.info("call %s transfer: %s -> %s (%s)", self._conv.call_id, self.phase, dst, why)
        self.phase = dst
        self._conv.transfer_phase_changed(None if dst is Phase.TALKING else str(dst))

    def involves(self, agent_id: str) -> bool:
        """The consulted agent is part of the call while the consult is up (their hang-up ends it)."""
        return agent_id == self.consultee and self.phase is Phase.CONSULTING

    def check(self, req: TransferRequest) -> None:
        """Refuse at once (in the console's request) what cannot work; the call's task re-checks."""
        conv = self._conv
        if req.agent_id != conv.owner:
            raise TransferError("you are not the agent on this call")
        if isinstance(req, (BlindTransfer, Consult)):
            if self.phase not in (Phase.TALKING, Phase.HELD):
                raise TransferError("finish the transfer in progress first")
            target = req.target if isinstance(req, BlindTransfer) else ToAgent(req.to_agent)
            if isinstance(target, ToAgent):
                self._check_agent(target.agent_id)
            elif isinstance(target, ToQueue):
                if conv.svc.queue_config(target.queue_id) is None:
                    raise TransferError(f"there is no queue {target.queue_id}")
            elif conv.svc.dial_external is None:
                raise TransferError("this box has no line to dial out on")
        elif isinstance(req, CompleteTransfer) and self.phase is not Phase.CONSULTING:
            raise TransferError("nobody has answered the consult yet")
        elif isinstance(req, CancelConsult) and self.phase not in (Phase.CONSULT_RINGING, Phase.CONSULTING, Phase.HELD):
            raise TransferError("there is no consult to cancel")
        elif isinstance(req, Retrieve) and self.phase not in (Phase.HELD, Phase.DIALING, Phase.CONSULT_RINGING):
            raise TransferError("the caller is not on hold")

    def _check_agent(self, agent_id: str) -> None:
        acd = self._conv.svc.acd
        try:
            snap = acd.snapshot(agent_id)
        except AcdError:
            raise TransferError(f"there is no agent {agent_id}") from None
        if agent_id == self._conv.owner:
            raise TransferError("you cannot transfer a call to yourself")
        if str(snap.state) != "available":
            raise TransferError(f"{snap.name} is not available ({snap.state})")

    # --- requests ------------------------------------------------------------------------------
    async def handle(self, msg: object) -> None:
        try:
            await self._handle(msg)
        except (TransferError, AcdError) as exc:  # a state the checks did not foresee: keep the call
            log.warning("call %s: %s in phase %s: %s", self._conv.call_id, type(msg).__name__, self.phase, exc)
            self._conv.notify(self._conv.owner or "", "failed", "from", None, str(exc))

    async def _handle(self, msg: object) -> None:
        if isinstance(msg, (BlindTransfer, Consult, CompleteTransfer, CancelConsult, Retrieve)):
            try:
                self.check(msg)
            except TransferError as exc:
                self._conv.notify(msg.agent_id, "failed", "from", None, str(exc))
                return
        if isinstance(msg, BlindTransfer):
            await self._blind(msg.agent_id, msg.target)
        elif isinstance(msg, Consult):
            self._start_consult(msg.agent_id, msg.to_agent)
        elif isinstance(msg, CompleteTransfer):
            await self.complete()
        elif isinstance(msg, CancelConsult):
            await self.cancel_consult("cancelled by you")
        elif isinstance(msg, Retrieve):
            await self._retrieve()
        elif isinstance(msg, OfferAnswered):
            await self._offer_answered(msg)
        elif isinstance(msg, OfferUnanswered):
            self._offer_unanswered(msg)
        elif isinstance(msg, DialAnswered):
            self._dial_answered(msg.out)
        elif isinstance(msg, DialNotAnswered):
            self._dial_failed(msg.reason)

    async def _blind(self, agent_id: str, target: Target) -> None:
        conv = self._conv
        if isinstance(target, ToNumber):
            self._go(Phase.DIALING, f"{agent_id} dials {target.number}")
            conv.hold_caller()
            self._dial_number = target.number
            self._dial = asyncio.create_task(self._run_dial(target.number), name=f"transfer-dial:{conv.call_id}")
            conv.notify(agent_id, str(Phase.DIALING), "from", target.number, f"calling {target.number}; the caller is on hold")
            return
        self._go(Phase.TRANSFERRING, f"{agent_id} blind to {target}")
        conv.hold_caller()
        to = target.agent_id if isinstance(target, ToAgent) else target.queue_id
        conv.end_segment("transferred", transfer="blind", transferred_to=to)
        self.offer_from = agent_id
        if isinstance(target, ToAgent):
            conv.notify(agent_id, "transferred", "from", conv.svc.agent_name(to), f"call transferred to {conv.svc.agent_name(to)}")
            self._offer_to(target.agent_id, "transfer", agent_id)
        else:
            conv.notify(agent_id, "transferred", "from", to, f"call transferred to queue {to}")
            self._enqueue(target.queue_id)

    def _start_consult(self, agent_id: str, to_agent: str) -> None:
        conv = self._conv
        self._go(Phase.CONSULT_RINGING, f"{agent_id} consults {to_agent}")
        conv.hold_caller()
        self.consultee = to_agent
        if not self._offer_to(to_agent, "consult", agent_id):
            return
        conv.notify(agent_id, str(Phase.CONSULT_RINGING), "from", conv.svc.agent_name(to_agent),
                    f"ringing {conv.svc.agent_name(to_agent)}; the caller is on hold")

    def _offer_to(self, agent_id: str, kind: str, from_agent: str) -> bool:
        conv = self._conv
        qc = conv.new_queued_call(conv.lc.queue.id, target=agent_id, kind=kind, from_agent=from_agent)
        self.offer = qc
        try:
            conv.svc.acd.offer_directed(qc)
        except AcdError as exc:  # the agent changed state between the request and now
            log.info("call %s: %s offer to %s refused: %s", conv.call_id, kind, agent_id, exc)
            self._offer_unanswered(OfferUnanswered(qc, str(exc)))
            return False
        self._watch_offer(qc)
        return True

    def _enqueue(self, queue_id: str, *, front: bool = True, declined: frozenset[str] = frozenset()) -> None:
        conv = self._conv
        qcfg = conv.svc.queue_config(queue_id) or conv.lc.queue
        if qcfg.id != conv.lc.queue.id:
            self.offer_queue_changed = True
            conv.lc.queue = qcfg
            conv.hold_caller()  # the new queue's hold music
        qc = conv.new_queued_call(qcfg.id, priority=1 if front else 0)
        qc.declined.update(declined)  # an agent who just let it ring is tried last
        conv.svc.acd.enqueue(qc)
        self._watch_offer(qc)
        conv.queued_for_transfer(qc)

    def _watch_offer(self, qc: QueuedCall) -> None:
        self.offer = qc

        def done(fut: asyncio.Future[str]) -> None:
            if fut.cancelled():
                self._conv.post(OfferUnanswered(qc, qc.end_reason or "withdrawn"))
            else:
                self._conv.post(OfferAnswered(qc, fut.result()))

        qc.answered.add_done_callback(done)

    async def _offer_answered(self, msg: OfferAnswered) -> None:
        if msg.offer is not self.offer:
            return  # a stale answer (the offer was withdrawn meanwhile)
        conv = self._conv
        self.offer = None
        if self.phase is Phase.CONSULT_RINGING:
            owner_leg = conv.svc.agents.media_for(conv.owner or "") or NullLeg()
            consultee_leg = conv.svc.agents.media_for(msg.agent_id) or NullLeg()
            self.consult = Bridge(owner_leg, consultee_leg, None, name=f"consult:{conv.call_id}")
            self.consult.start()
            self._go(Phase.CONSULTING, f"{msg.agent_id} answered the consult")
            name_a, name_b = conv.svc.agent_name(conv.owner or ""), conv.svc.agent_name(msg.agent_id)
            conv.notify(conv.owner or "", str(Phase.CONSULTING), "from", name_b, f"talking to {name_b}; the caller is on hold")
            conv.notify(msg.agent_id, str(Phase.CONSULTING), "to", name_a, f"{name_a} is consulting you about {conv.caller_label}")
            return
        if self.phase is Phase.TRANSFERRING:
            self._go(Phase.TALKING, f"{msg.agent_id} took the transferred call")
            enqueued_at = msg.offer.enqueued_at if self.offer_queue_changed else None
            conv.connect_agent(msg.agent_id, transferred_from=self.offer_from, enqueued_at=enqueued_at,
                               offers=tuple(msg.offer.offers))
            self.offer_from, self.offer_queue_changed = None, False

    def _offer_unanswered(self, msg: OfferUnanswered) -> None:
        if msg.offer is not self.offer:
            return  # withdrawn on purpose (cancel, retrieve) or stale
        conv = self._conv
        self.offer = None
        if self.phase is Phase.CONSULT_RINGING:
            name = conv.svc.agent_name(self.consultee or "")
            self.consultee = None
            self._go(Phase.HELD, f"consult not answered: {msg.reason}")
            conv.notify(conv.owner or "", str(Phase.HELD), "from", name,
                        f"{name} did not take the consult ({msg.reason}); the caller is on hold: retrieve or transfer")
        elif self.phase is Phase.TRANSFERRING:
            log.info("call %s: transfer not answered (%s); back to the front of queue %s", conv.call_id, msg.reason, conv.lc.queue.id)
            self._go(Phase.TRANSFERRING, "back to the queue")
            self._enqueue(conv.lc.queue.id, declined=frozenset(msg.offer.declined))

    async def complete(self) -> None:
        conv = self._conv
        consultee, owner = self.consultee, conv.owner
        assert consultee is not None and owner is not None
        await self._stop_consult()
        try:
            conv.svc.acd.take_over(consultee, conv.next_call_id)
        except AcdError as exc:
            log.warning("call %s: %s; %s keeps the caller", conv.call_id, exc, owner)
            self.consultee = None
            self._go(Phase.TALKING, "consultee gone")
            conv.back_to_owner()
            conv.notify(owner, "failed", "from", None, str(exc))
            return
        self._go(Phase.TALKING, f"{owner} completed the transfer to {consultee}")
        conv.end_segment("transferred", transfer="attended", transferred_to=consultee)
        self.consultee = None
        conv.connect_agent(consultee, transferred_from=owner)
        conv.notify(owner, "completed", "from", conv.svc.agent_name(consultee), f"call transferred to {conv.svc.agent_name(consultee)}")

    async def cancel_consult(self, why: str) -> None:
        conv = self._conv
        owner, consultee = conv.owner or "", self.consultee
        if self.phase is Phase.CONSULT_RINGING and self.offer is not None:
            offer, self.offer = self.offer, None
            conv.svc.acd.withdraw(offer.call_id)
        elif self.phase is Phase.CONSULTING:
            await self._stop_consult()
            if consultee is not None:
                conv.svc.acd.consult_ended(consultee, conv.next_call_id)
                conv.notify(consultee, "cancelled", "to", conv.svc.agent_name(owner), f"consult ended ({why})")
        self.consultee = None
        self._go(Phase.TALKING, f"consult cancelled: {why}")
        conv.back_to_owner()
        conv.notify(owner, "cancelled", "from", None, f"consult ended ({why}); you are back with the caller")

    async def _retrieve(self) -> None:
        conv = self._conv
        if self.phase is Phase.CONSULT_RINGING:
            await self.cancel_consult("retrieved")
            return
        if self.phase is Phase.DIALING:
            await self._cancel_dial()
        self._go(Phase.TALKING, "retrieved")
        conv.back_to_owner()
        conv.notify(conv.owner or "", "cancelled", "from", None, "you are back with the caller")

    async def _stop_consult(self) -> None:
        bridge, self.consult = self.consult, None
        if bridge is not None:
            await bridge.stop(CONSULT_STOP_TIMEOUT_S)

    # --- external -----------------------------------------------------------------------------
    async def _run_dial(self, number: str) -> None:
        conv = self._conv
        dial = conv.svc.dial_external
        assert dial is not None
        try:
            async with asyncio.timeout(EXTERNAL_ANSWER_TIMEOUT_S):  # placing the call and its ringing
                self._out = out = await dial(number)
                await out.wait_answered()
        except DialFailed as exc:
            conv.post(DialNotAnswered(str(exc)))
        except TimeoutError:
            conv.post(DialNotAnswered(f"{DialFailure.NO_ANSWER.value}: no answer within {EXTERNAL_ANSWER_TIMEOUT_S:.0f}s"))
        else:
            conv.post(DialAnswered(out))
            return
        failed, self._out = self._out, None
        if failed is not None:
            await conv.hangup_outbound(failed, HangupCause.TIMEOUT)

    async def _cancel_dial(self) -> None:
        task, self._dial = self._dial, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        out, self._out = self._out, None
        if out is not None:
            await self._conv.hangup_outbound(out, HangupCause.CANCELLED)

    def _dial_answered(self, out: OutboundCall) -> None:
        conv = self._conv
        if self.phase is not Phase.DIALING or out is not self._out:
            return
        self._dial, self._out = None, None
        owner, number = conv.owner, self._dial_number or out.called
        self._go(Phase.TALKING, f"{number} answered")
        conv.end_segment("transferred", transfer="blind", transferred_to=number)
        conv.connect_external(out, number, transferred_from=owner)
        if owner is not None:
            conv.notify(owner, "completed", "from", number, f"call transferred to {number}")

    def _dial_failed(self, reason: str) -> None:
        conv = self._conv
        if self.phase is not Phase.DIALING:
            return
        self._dial = None
        log.info("call %s: transfer to %s failed (%s); the agent has the caller back", conv.call_id, self._dial_number, reason)
        self._go(Phase.TALKING, "dial failed")
        conv.back_to_owner()
        conv.notify(conv.owner or "", "failed", "from", self._dial_number, f"{self._dial_number}: {reason}; you are back with the caller")

    # --- the call ends -------------------------------------------------------------------------
    async def caller_left(self, cause: str, outcome: str) -> None:
        """End whatever transfer is in progress; the conversation ends the owner's segment."""
        conv = self._conv
        if self.offer is not None:
            offer, self.offer = self.offer, None
            conv.svc.acd.withdraw(offer.call_id)
            if offer.answered.done() and not offer.answered.cancelled():
                # the agent answered just as the caller left (the answer is still in our inbox)
                agent_id = offer.answered.result()
                if offer.kind == "consult":
                    conv.svc.acd.consult_ended(agent_id, offer.call_id)
                else:
                    conv.svc.acd.call_ended(agent_id, offer.call_id, on_wrapup_done=lambda d: None)
            if self.phase is Phase.TRANSFERRING:
                conv.transfer_abandoned(offer, self.offer_from, self.offer_queue_changed, cause, outcome)
        if self.consult is not None:
            await self._stop_consult()
            if self.consultee is not None:
                conv.svc.acd.consult_ended(self.consultee, conv.next_call_id)
                conv.notify(self.consultee, "cancelled", "to", None, "the caller hung up")
        await self._cancel_dial()
        self.consultee = None
