"""Attended transfer from an agent's SIP desk phone (RFC 5589 §7: the phone's own consult call,
then REFER with Replaces).

The phone holds the customer (dialog D1, the box called the phone) and calls a colleague
through the box (dialog D2, the phone calls the box: ``INVITE sip:bob@box``). ``DeskConsult``
sits in front of ``CallCenter.handle_inbound`` and tells such an internal consult call from
a customer call (``decide``). A consult call becomes ``CallCenter.consult(alice, None, bob)``
with D2 as alice's audio (``AgentDevices.begin_consult``): D2 rings with ringback as early
media, is answered when bob answers, and is refused with a clear status when bob declines
(603), does not answer (480) or is busy/unavailable (486); the customer then goes back to
alice at once (``retrieve``: the box cannot tell when a phone resumes D1, and the customer
is better off with the agent who holds the call than on hold music nobody will end).

The phone then sends REFER in D1 with ``Replaces`` naming D2: ``complete_from_phone``
checks that the Replaces is this agent's consult call (``SipLine.find_dialog``) and
completes the transfer; the phone hangs up D1 and D2 itself (both legs are marked, so
those BYEs are no agent hang-up and the box sends no crossing BYEs); after
``PHONE_BYE_GRACE_S`` the box ends D2 if the phone left it up. The phone hanging up D2
during the consult cancels the consult.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Mapping

from appliance.acd.agent import AgentState
from appliance.acd.events import AgentChanged, OfferEnded, OfferMade
from appliance.acd.router import Acd, AcdError
from appliance.agent_devices import Device
from appliance.hub import Topic
from appliance.lines import CallGone, HangupCause, InboundCall
from appliance.transfer import Phase
from appliance.transfer_requests import CancelConsult, TransferError
from media.bridge import Bridge, NullLeg
from media.tones import ringback

log = logging.getLogger(__name__)

CONSULT_OFFER_WAIT_S = 5.0  # the call's task rings the colleague within ms of the request; else it refused
COMPLETE_WAIT_S = 5.0  # the call's task completes a transfer within ms; the phone then hears NOTIFY 503
PHONE_BYE_GRACE_S = 2.0  # after a REFER succeeds the phone BYEs its dialogs within ms (RFC 5589); then we do
HANGUP_TIMEOUT_S = 5.0  # a LAN phone answers a BYE in milliseconds
EVENTS_MAXSIZE = 256  # ACD events seen while one consult is up (a handful per agent state change)

# why the colleague's consult offer ended -> the final status the phone gets on its consult call
OFFER_END_STATUS: dict[str, tuple[int, str]] = {
    "rejected": (603, "Decline"),
    "timeout": (480, "Temporarily Unavailable"),
    "logged out": (480, "Temporarily Unavailable"),
}
DEFAULT_END_STATUS = (480, "Temporarily Unavailable")


class RouteKind(StrEnum):
    CUSTOMER = "customer"  # an ordinary call for the queue
    CONSULT = "consult"  # an agent's desk phone calls a colleague during a call
    REFUSE = "refuse"  # an agent's desk phone calls something that is no colleague


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    agent_id: str | None = None  # the consulting agent
    target: str | None = None  # the consulted agent
    status: int = 0  # REFUSE: the final response
    reason: str = ""


CUSTOMER = Route(RouteKind.CUSTOMER)


def decide(from_user: str | None, source: tuple[str, int] | None, transport: str, called: str | None, *,
           extensions: Mapping[str, str], bindings: Callable[[str], tuple[Any, ...]],
           on_phone_call: Callable[[str], bool]) -> Route:
    """Is this INVITE an agent's desk phone consulting a colleague? Pure.

    ``extensions``: agent id -> desk phone extension. ``bindings(extension)``: its registrations.
    ``on_phone_call(agent)``: the agent is on a call on the desk phone now.

    The From header is the phone's own claim and anybody can write it; a registration was
    proven with the extension's digest password. So the INVITE must come from the very
    address (ip, port and transport) one of the extension's live registrations came from:
    an INVITE claiming ``From: 201`` from anywhere else is treated as what it looks like to
    everybody else, a customer call. (A phone sends its calls from its registered socket;
    over TCP/TLS the registered connection is reused.)
    """
    if source is None or not from_user:
        return CUSTOMER
    agent = next((a for a, ext in extensions.items() if ext and ext == from_user), None)
    if agent is None:
        return CUSTOMER
    if not any(tuple(b.source[:2]) == tuple(source[:2]) and b.transport == transport for b in bindings(from_user)):
        log.info("INVITE claims extension %s but comes from %s:%s (%s), where it is not registered: a customer call",
                 from_user, source[0], source[1], transport)
        return CUSTOMER
    if not on_phone_call(agent):
        return CUSTOMER
    target = called if called in extensions else next((a for a, ext in extensions.items() if ext and ext == called),
                                                      None)
    if target is None:
        return Route(RouteKind.REFUSE, agent, None, 404, "Not Found")
    if target == agent:
        return Route(RouteKind.REFUSE, agent, target, 403, "Forbidden")
    return Route(RouteKind.CONSULT, agent, target)


@dataclass(eq=False)
class _Consult:
    agent_id: str
    target: str
    call: Any  # the phone's consult call (drivers.sip.call.SipCall)
    conv: Any  # the agent's Conversation
    offer_id: str | None = None  # the colleague's consult offer (ACD call id)
    answered: bool = False
    transferred: bool = False  # the phone's REFER completed the transfer: the phone ends D2 itself
    outcome: asyncio.Future[bool] | None = field(default=None, repr=False)

    def bridgeable(self) -> bool:
        """The consult bridge may take D2 as the agent's audio (the call's task asks at the answer)."""
        return (not self.call.ended and self.conv.owner == self.agent_id
                and self.conv.transfers.phase in (Phase.CONSULT_RINGING, Phase.CONSULTING))

    def settle(self, ok: bool) -> None:
        if self.outcome is not None and not self.outcome.done():
            self.outcome.set_result(ok)


class DeskConsult:
    def __init__(self, calls: Any, devices: Any, acd: Acd, acd_topic: Topic, phone_line: Callable[[], Any],
                 extensions: Callable[[], Mapping[str, str]], country: str = "") -> None:
        self._calls = calls  # CallCenter
        self._devices = devices  # AgentDevices
        self._acd = acd
        self._topic = acd_topic
        self._phone_line = phone_line
        self._extensions = extensions
        self._country = country
        self._consults: dict[str, _Consult] = {}

    # --- routing -----------------------------------------------------------------------------
    def route(self, call: InboundCall) -> Route:
        line = self._phone_line()
        if line is None:
            return CUSTOMER
        return decide(call.caller.number, getattr(call, "source", None), getattr(call, "transport", ""), call.called,
                      extensions=self._extensions(), bindings=line.bindings, on_phone_call=self._on_phone_call)

    def _on_phone_call(self, agent_id: str) -> bool:
        return self._devices.device(agent_id) is Device.PHONE and self._conversation_of(agent_id) is not None

    def _conversation_of(self, agent_id: str) -> Any:
        for snap in self._calls.live_calls():
            if snap.agent_id == agent_id:
                conv = self._calls.conversation(snap.call_id)
                if conv is not None and conv.owner == agent_id:
                    return conv
        return None

    async def handle_inbound(self, call: InboundCall) -> None:
        """The SIP line's handler: consult calls are served here, every other call goes to the queue."""
        route = self.route(call)
        if route.kind is RouteKind.CUSTOMER:
            await self._calls.handle_inbound(call)
        elif route.kind is RouteKind.REFUSE:
            log.info("agent %s's desk phone called %r during a call: no such colleague; refused with %d",
                     route.agent_id, call.called, route.status)
            await call.reject(route.status, route.reason)  # type: ignore[attr-defined]
        else:
            assert route.agent_id is not None and route.target is not None
            await self._consult(call, route.agent_id, route.target)

    # --- one consult, in the SIP line's task for D2 ------------------------------------------------
    async def _consult(self, call: Any, agent_id: str, target: str) -> None:
        conv = self._conversation_of(agent_id)
        if conv is None or agent_id in self._consults:
            await call.reject(486, "Busy Here")
            return
        consult = _Consult(agent_id, target, call, conv)
        events = self._topic.subscribe(maxsize=EVENTS_MAXSIZE)  # before the request: no offer event is missed
        tone = Bridge(call.audio, NullLeg(), None, name=f"consult-ringback:{call.call_id}")
        try:
            try:
                self._calls.consult(agent_id, None, target)
            except TransferError as exc:
                status = self._refusal(target)
                log.info("agent %s: desk phone consult of %s refused (%s): %d", agent_id, target, exc, status[0])
                await call.reject(*status)
                return
            self._consults[agent_id] = consult
            log.info("agent %s consults %s from the desk phone (call %s)", agent_id, target, call.call_id)
            with contextlib.suppress(CallGone):  # the phone gave up already: _follow sees it ended
                await call.progress()  # 180 with SDP: the ringback below is its early media
                tone.hold(self._ringback())
                tone.start()
                self._devices.begin_consult(agent_id, call.audio, consult.bridgeable,
                                            lambda: tone.replace_customer(NullLeg()))
            await self._follow(consult, events, tone)
        finally:
            events.close()
            self._devices.end_consult(agent_id, call.audio)
            if self._consults.get(agent_id) is consult:
                del self._consults[agent_id]
            consult.settle(False)
            if tone.running:
                await tone.stop()
            await self._hangup(call)

    async def _follow(self, consult: _Consult, events: Any, tone: Bridge) -> None:
        call = consult.call
        ended = asyncio.ensure_future(call.wait_ended())
        loop = asyncio.get_running_loop()
        offer_deadline = loop.time() + CONSULT_OFFER_WAIT_S
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(events.get())
                timeout = None if consult.offer_id is not None else max(0.0, offer_deadline - loop.time())
                done, _ = await asyncio.wait({getter, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if ended in done:
                    self._phone_left(consult)
                    return
                if not done:
                    log.info("agent %s: %s was not rung for the consult; the caller goes back to the agent",
                             consult.agent_id, consult.target)
                    await call.reject(*DEFAULT_END_STATUS)
                    self._retrieve(consult)
                    return
                event, getter = getter.result(), None
                if await self._on_event(consult, event, tone):
                    return
        finally:
            for fut in (getter, ended):
                if fut is not None:
                    fut.cancel()

    async def _on_event(self, consult: _Consult, event: object, tone: Bridge) -> bool:
        """One ACD event; True when the consult call is over for us."""
        if isinstance(event, OfferMade):
            if event.kind == "consult" and event.from_agent == consult.agent_id and event.agent_id == consult.target:
                consult.offer_id = event.call_id
            return False
        if isinstance(event, OfferEnded):
            if event.call_id != consult.offer_id or consult.answered:
                return False
            if event.reason == "answered":
                consult.answered = True
                tone.replace_customer(NullLeg())
                await tone.stop()
                try:
                    await consult.call.answer()
                except CallGone:
                    pass  # the phone hung up meanwhile: its end is the next thing we see
                log.info("agent %s: %s answered the desk phone consult", consult.agent_id, consult.target)
                return False
            status = OFFER_END_STATUS.get(event.reason, DEFAULT_END_STATUS)
            log.info("agent %s: %s did not take the consult (%s); desk phone told %d, the caller goes back to "
                     "the agent", consult.agent_id, consult.target, event.reason, status[0])
            await consult.call.reject(*status)
            self._retrieve(consult)
            return True
        if isinstance(event, AgentChanged):
            snap = event.agent
            if snap.agent_id == consult.agent_id and snap.state is not AgentState.ON_CALL:
                # the agent's part of the customer call ended: completed, or the customer left
                completed = consult.conv.owner == consult.target
                consult.settle(completed)
                if completed and consult.transferred:
                    await self._grace(consult.call)
                return True
            if (snap.agent_id == consult.target and consult.answered and snap.state is not AgentState.ON_CALL
                    and not consult.transferred):
                log.info("agent %s: consult with %s ended; the caller is back with the agent",
                         consult.agent_id, consult.target)
                consult.settle(False)
                return True
        return False

    def _phone_left(self, consult: _Consult) -> None:
        if consult.transferred:
            return  # the phone ends its consult call after its own transfer
        self._cancel(consult, "the desk phone hung up the consult call")

    def _cancel(self, consult: _Consult, why: str) -> None:
        log.info("agent %s: %s; consult with %s cancelled", consult.agent_id, why, consult.target)
        try:
            self._calls.cancel_consult(consult.agent_id, None)
        except TransferError:
            if consult.offer_id is None and consult.conv.transfers.phase is Phase.TALKING:
                # the consult request still waits in the call's inbox (its check passed, nobody is
                # rung yet), so a checked cancel is refused now: queue the cancel behind it instead
                consult.conv.post(CancelConsult(consult.agent_id))

    def _retrieve(self, consult: _Consult) -> None:
        with contextlib.suppress(TransferError):
            self._calls.retrieve(consult.agent_id, None)

    # --- the phone's REFER with Replaces (in D1) ----------------------------------------------------
    async def complete_from_phone(self, agent_id: str, replaces: tuple[str, str, str]) -> bool:
        """Complete the agent's consult when ``replaces`` names its consult call; False (NOTIFY 503) else."""
        consult = self._consults.get(agent_id)
        line = self._phone_line()
        dialog = line.find_dialog(*replaces) if line is not None else None
        if consult is None or dialog is None or dialog is not consult.call:
            log.info("agent %s: desk phone REFER replaces dialog %s, which is not the agent's consult call; refused",
                     agent_id, replaces[0])
            return False
        if consult.conv.transfers.phase is not Phase.CONSULTING:
            log.info("agent %s: desk phone REFER before %s answered the consult; refused", agent_id, consult.target)
            return False
        consult.transferred = True
        consult.outcome = asyncio.get_running_loop().create_future()
        try:
            self._calls.complete_transfer(agent_id, None)
            async with asyncio.timeout(COMPLETE_WAIT_S):
                ok = await asyncio.shield(consult.outcome)
        except TransferError as exc:
            log.info("agent %s: desk phone transfer to %s refused: %s", agent_id, consult.target, exc)
            ok = False
        except TimeoutError:
            log.warning("agent %s: transfer to %s not done within %.0fs", agent_id, consult.target, COMPLETE_WAIT_S)
            ok = False
        if not ok:
            consult.transferred = False
        else:
            log.info("agent %s transferred the call to %s from the desk phone (attended)", agent_id, consult.target)
        return ok

    # --- helpers ------------------------------------------------------------------------------------
    def _refusal(self, target: str) -> tuple[int, str]:
        try:
            state = self._acd.snapshot(target).state
        except AcdError:
            return (404, "Not Found")
        return (486, "Busy Here") if state is not AgentState.AVAILABLE else (403, "Forbidden")

    def _ringback(self) -> Any:
        try:
            return ringback(self._country or "eu")
        except ValueError:
            return ringback("eu")

    async def _grace(self, call: Any) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PHONE_BYE_GRACE_S):
                await call.wait_ended()

    async def _hangup(self, call: Any) -> None:
        if call.ended:
            return
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT_S):
                await call.hangup(HangupCause.AGENT_HUNG_UP)
        except TimeoutError:
            log.warning("desk phone consult call %s did not end within %.0fs", call.call_id, HANGUP_TIMEOUT_S)
