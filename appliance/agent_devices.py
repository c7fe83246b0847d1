"""Where each agent takes calls: the console's WebRTC audio, or a registered SIP desk phone.

An agent whose config names a ``phone`` extension can switch between the two in the
console. With the desk phone chosen, every offer the ACD makes to the agent rings the
phone (the customer's number shown as caller ID): picking up accepts the offer, declining
(busy/decline on the phone) rejects it, and the ACD's ring timeout or the caller leaving
cancels the ringing. A phone that cannot be rung or fails the call (it picks up without usable
audio, answers 404/5xx or nothing) ends the offer at once: the caller moves on, the agent is
paused with the reason (not as a missed offer) and a WARNING tells the site admin what to
check. Once the agent's call ends the box hangs the phone up; when the agent puts the handset
down first, the call ends as an agent hang-up.

The phone's own Transfer key works too: a blind transfer (REFER) to an agent's id or desk
phone extension, a queue id or a number is handed to the call's transfer machinery
(``on_phone_transfer``); the phone hears the outcome in the REFER's NOTIFY. An attended
transfer from the phone (the phone calls the other agent itself, then sends REFER with
Replaces naming that consult call) goes to ``on_phone_replaces`` (``appliance.desk_consult``);
while such a consult is up, ``media_for`` gives the consult call's audio (``begin_consult``).

``media_for`` is what the call flows use to find an agent's audio, whichever device.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Awaitable, Callable, Protocol

from appliance.acd.agent import AgentState
from appliance.acd.events import AgentChanged, OfferEnded, OfferMade
from appliance.acd.router import Acd, AcdError
from appliance.call_controls import ControlError
from appliance.hub import Topic
from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, OutboundCall
from media.frames import LegAudio

log = logging.getLogger(__name__)

PHONE_HANGUP_TIMEOUT_S = 5.0  # a LAN phone answers a BYE/CANCEL in milliseconds; then we give up on it
PHONE_DOWN_PAUSE = "desk phone not reachable"  # the pause reason when an offer cannot ring the phone
PHONE_NO_AUDIO_PAUSE = "desk phone failed: answered without audio"  # it picked up with no usable SDP
PHONE_RING_TIMEOUT_S = 30.0  # click-to-dial: the agent's own phone must be picked up within this
TRANSFER_BYE_GRACE_S = 2.0  # after a REFER succeeds the phone sends its BYE (RFC 5589) within ms; then we do


async def _refuse_replaces(agent_id: str, replaces: tuple[str, str, str]) -> bool:
    log.info("agent %s: attended transfer from the desk phone is not set up on this box", agent_id)
    return False


class Device(StrEnum):
    BROWSER = "browser"
    PHONE = "phone"


class DeviceError(Exception):
    """The agent cannot use that device now; the message is shown in the console."""


class PhoneLine(Protocol):
    """The SIP line's desk-phone side (drivers.sip.line.SipLine)."""

    def bindings(self, extension: str) -> tuple: ...
    def reachable(self, extension: str) -> bool | None: ...  # False: every registered phone stopped answering
    async def dial_extension(self, extension: str, caller: CallerId | None = None) -> OutboundCall: ...


class BrowserMedia(Protocol):
    def media_for(self, agent_id: str) -> LegAudio | None: ...
    async def wait_reconnected(self, agent_id: str, old: LegAudio, timeout: float) -> LegAudio | None: ...


_CHECK_NETWORK = "Check that the phone is on, signed in and connected to the network."
_CHECK_CODECS = "Check the phone's audio codec / SDP settings: PCMU or PCMA must be enabled."
_CHECK_LINE = "Check the SIP line's status and the log lines before this one."


@dataclass(frozen=True, slots=True)
class _PhoneFault:
    """Why a desk phone cannot take the agent's calls: for the agent's pause and the site admin's log."""

    pause: str  # the agent's pause reason, shown in the console
    what: str  # what happened, after "desk phone <extension>"
    advice: str  # what the site admin should check


def _phone_fault(exc: DialFailed, *, rang: bool) -> _PhoneFault | None:
    """The fault a failed ring shows (``rang``: the phone was rung, else the line refused to ring it);
    None when it shows none: the agent declined or did not pick up, or the box cancelled the ringing."""
    what = f"failed the call: {exc}" if rang else f"cannot be rung: {exc}"
    if exc.reason in (DialFailure.LINE_DOWN, DialFailure.UNREACHABLE):
        # unregistered, not answering OPTIONS, its connection closed; a 404/5xx or no response at all
        return _PhoneFault(PHONE_DOWN_PAUSE, what, _CHECK_NETWORK)
    if not rang:  # the SIP line itself cannot place the call (all its calls up, no RTP port)
        return _PhoneFault(PHONE_DOWN_PAUSE, what, _CHECK_LINE)
    if exc.reason is not DialFailure.ERROR:
        return None
    if exc.no_media:  # it picked up with no SDP, or an SDP answer we cannot use
        return _PhoneFault(PHONE_NO_AUDIO_PAUSE, f"picked up without usable audio ({exc.detail}), so the box hung up",
                           _CHECK_CODECS)
    return _PhoneFault(f"desk phone failed: {exc.detail or exc.reason}", what, _CHECK_CODECS)  # e.g. 488


@dataclass(frozen=True, slots=True, eq=False)
class _ConsultLeg:
    """The phone's own call to the consulted agent (``appliance.desk_consult``)."""

    audio: LegAudio
    active: Callable[[], bool]  # the consult is ringing or up: the consult bridge takes this leg
    on_bridged: Callable[[], None]  # called as the leg is handed to the consult bridge (ringback stops)


@dataclass(eq=False)
class _PhoneLeg:
    call: OutboundCall
    call_id: str  # the customer call it serves ("" while ringing for click-to-dial)
    answered: bool = False
    transferred: bool = False  # the phone's REFER moved the call on: the phone hangs up itself
    watcher: asyncio.Task | None = field(default=None, repr=False)


class AgentDevices:
    def __init__(self, acd: Acd, acd_topic: Topic, browser: BrowserMedia,
                 phone_line: Callable[[], PhoneLine | None], extension_of: Callable[[str], str]) -> None:
        self._acd = acd
        self._topic = acd_topic
        self._browser = browser
        self._phone_line = phone_line
        self._extension_of = extension_of  # agent id -> phone extension ("" when none)
        self._device: dict[str, Device] = {}
        self._legs: dict[str, _PhoneLeg] = {}
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self.on_phone_hangup: Callable[[str], bool] = lambda agent_id: False  # set by the box: ends the agent's call
        # set by the box: (agent id, the Refer-To user) -> True when the agent's call was transferred
        self.on_phone_transfer: Callable[[str, str], bool] = lambda agent_id, user: False
        # set by the box: (agent id, held) -> the desk phone's Hold key held or resumed the customer
        self.on_phone_hold: Callable[[str, bool], object] = lambda agent_id, held: False
        # set by the box: (agent id, Replaces (call-id, to-tag, from-tag)) -> True once transferred
        self.on_phone_replaces: Callable[[str, tuple[str, str, str]], Awaitable[bool]] = _refuse_replaces
        self._consults: dict[str, _ConsultLeg] = {}

    # --- what the console uses -----------------------------------------------------------------
    def device(self, agent_id: str) -> Device:
        return self._device.get(agent_id, Device.BROWSER)

    def set_device(self, agent_id: str, device: str) -> Device:
        try:
            wanted = Device(device)
        except ValueError:
            raise DeviceError(f"unknown device {device!r}: choose browser or phone") from None
        if wanted is Device.PHONE:
            problem = self.phone_problem(agent_id)
            if problem:
                raise DeviceError(problem)
        snap = self._acd.snapshot(agent_id)
        if snap.state in (AgentState.RESERVED, AgentState.ON_CALL):
            raise DeviceError("finish the current call before switching device")
        self._device[agent_id] = wanted
        log.info("agent %s takes calls on the %s%s", agent_id, "desk phone" if wanted is Device.PHONE else "console",
                 f" (extension {self._extension_of(agent_id)})" if wanted is Device.PHONE else "")
        return wanted

    def phone_problem(self, agent_id: str) -> str | None:
        """Why the agent's desk phone cannot take calls now, or None when it can."""
        extension = self._extension_of(agent_id)
        if not extension:
            return "no desk phone is configured for you (ask the site admin to set phone = \"<extension>\")"
        line = self._phone_line()
        if line is None:
            return "SIP is not running on this box"
        if not line.bindings(extension):
            return f"your desk phone (extension {extension}) is not registered: check that it is on and signed in"
        if line.reachable(extension) is False:
            return (f"your desk phone (extension {extension}) is not reachable: it is registered but does not answer; "
                    "check that it is on and connected to the network")
        return None

    def ready_problem(self, agent_id: str) -> str | None:
        """Why the agent cannot go available, or None."""
        if self.device(agent_id) is Device.PHONE:
            return self.phone_problem(agent_id)
        if self._browser.media_for(agent_id) is None:
            return "connect your audio before going available"
        return None

    # --- what the call flows use ------------------------------------------------------------------
    def begin_consult(self, agent_id: str, audio: LegAudio, active: Callable[[], bool],
                      on_bridged: Callable[[], None]) -> None:
        """The agent's desk phone called a colleague for a consult: while ``active()`` the agent's
        audio (for the consult bridge) is ``audio``; the call to the customer stays as it is."""
        self._consults[agent_id] = _ConsultLeg(audio, active, on_bridged)

    def end_consult(self, agent_id: str, audio: LegAudio) -> None:
        consult = self._consults.get(agent_id)
        if consult is not None and consult.audio is audio:
            del self._consults[agent_id]

    def media_for(self, agent_id: str) -> LegAudio | None:
        if self.device(agent_id) is Device.PHONE:
            consult = self._consults.get(agent_id)
            if consult is not None and consult.active():
                consult.on_bridged()
                return consult.audio
            leg = self._legs.get(agent_id)
            return leg.call.audio if leg is not None and leg.answered else None
        return self._browser.media_for(agent_id)

    async def wait_reconnected(self, agent_id: str, old: LegAudio, timeout: float) -> LegAudio | None:
        if self.device(agent_id) is Device.PHONE:
            return None  # a phone that went away is a hang-up, not a reconnect
        return await self._browser.wait_reconnected(agent_id, old, timeout)

    async def connect_for_outbound(self, agent_id: str, number: str) -> LegAudio:
        """The agent's audio for a call it places. On the desk phone: ring it first (showing the
        number being called) and return once it is picked up. Raises DialFailed."""
        if self.device(agent_id) is Device.BROWSER:
            leg = self._browser.media_for(agent_id)
            if leg is None:
                raise DialFailed(DialFailure.LINE_DOWN, "your console audio is not connected")
            return leg
        line = self._phone_line()
        extension = self._extension_of(agent_id)
        if line is None or not extension:
            raise DialFailed(DialFailure.LINE_DOWN, "no desk phone to ring")
        call = await line.dial_extension(extension, CallerId(number, f"Calling {number}"))
        entry = _PhoneLeg(call, "")
        self._legs[agent_id] = entry
        try:
            async with asyncio.timeout(PHONE_RING_TIMEOUT_S):
                await call.wait_answered()
        except (DialFailed, TimeoutError) as exc:
            self._legs.pop(agent_id, None)
            await self._hangup(call, HangupCause.CANCELLED)
            raise DialFailed(DialFailure.NO_ANSWER, f"your desk phone was not picked up ({exc or 'timeout'})") from None
        entry.answered = True
        entry.watcher = self._spawn(self._watch_phone(agent_id, entry), f"phone-watch:{agent_id}")
        self._follow_phone_keys(agent_id, call)
        return call.audio

    # --- ACD events: ring / cancel / hang up the phone -----------------------------------------------
    def start(self) -> None:
        sub = self._topic.subscribe(maxsize=512)  # subscribed now: no offer made after start() is missed
        self._runner = asyncio.create_task(self._run(sub), name="agent-devices")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for agent_id in list(self._legs):
            await self._drop_leg(agent_id, HangupCause.SHUTDOWN)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=PHONE_HANGUP_TIMEOUT_S)

    async def _run(self, sub) -> None:  # type: ignore[no-untyped-def]
        try:
            async for event in sub:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("agent devices: could not handle %s", type(event).__name__)
        finally:
            sub.close()

    def _on_event(self, event: object) -> None:
        if isinstance(event, OfferMade) and self.device(event.agent_id) is Device.PHONE:
            self._spawn(self._ring(event), f"phone-ring:{event.agent_id}")
        elif isinstance(event, OfferEnded) and event.reason != "answered":
            leg = self._legs.get(event.agent_id)
            if leg is not None and leg.call_id == event.call_id and not leg.answered:
                self._spawn(self._drop_leg(event.agent_id, HangupCause.CANCELLED), f"phone-cancel:{event.agent_id}")
        elif isinstance(event, AgentChanged):
            snap = event.agent
            leg = self._legs.get(snap.agent_id)
            if leg is not None and leg.answered and snap.state not in (AgentState.ON_CALL,):
                if leg.transferred:
                    self._spawn(self._release_after_transfer(snap.agent_id, leg), f"phone-release:{snap.agent_id}")
                else:
                    self._spawn(self._drop_leg(snap.agent_id, HangupCause.CALLER_HUNG_UP), f"phone-bye:{snap.agent_id}")

    async def _ring(self, offer: OfferMade) -> None:
        agent_id = offer.agent_id
        line = self._phone_line()
        extension = self._extension_of(agent_id)
        if line is None or not extension:
            return
        try:
            call = await line.dial_extension(extension, CallerId(offer.caller_number, offer.customer_name or offer.caller_name))
        except DialFailed as exc:  # the phone went away since the agent went available
            self._phone_failed(offer, extension, _phone_fault(exc, rang=False))
            return
        entry = _PhoneLeg(call, offer.call_id)
        self._legs[agent_id] = entry
        try:
            async with asyncio.timeout(offer.ring_timeout_s + 1.0):
                await call.wait_answered()
        except DialFailed as exc:
            if self._legs.get(agent_id) is entry:
                self._legs.pop(agent_id, None)
            if exc.reason in (DialFailure.BUSY, DialFailure.REJECTED):
                log.info("agent %s declined call %s on the desk phone", agent_id, offer.call_id)
                with contextlib.suppress(AcdError):
                    self._acd.reject(agent_id, offer.call_id)
            else:
                self._phone_failed(offer, extension, _phone_fault(exc, rang=True))
            return
        except TimeoutError:
            await self._drop_leg(agent_id, HangupCause.TIMEOUT)
            return
        if self._legs.get(agent_id) is not entry:  # the offer ended while the phone was being picked up
            await self._hangup(call, HangupCause.CANCELLED)
            return
        entry.answered = True
        try:
            self._acd.accept(agent_id, offer.call_id)
        except AcdError as exc:
            log.info("agent %s picked up call %s too late (%s)", agent_id, offer.call_id, exc)
            await self._drop_leg(agent_id, HangupCause.CANCELLED)
            return
        log.info("agent %s answered call %s on desk phone %s", agent_id, offer.call_id, extension)
        entry.watcher = self._spawn(self._watch_phone(agent_id, entry), f"phone-watch:{agent_id}")
        self._follow_phone_keys(agent_id, call)

    def _phone_failed(self, offer: OfferMade, extension: str, fault: _PhoneFault | None) -> None:
        """The phone would fail the next offer the same way: the offer ends now, the caller moves
        on, and the agent pauses with the reason (not "missed offer": nobody let it ring)."""
        if fault is None:
            return
        log.warning("agent %s: desk phone %s %s; the offer of call %s ends at once and the agent is paused (%s). %s",
                    offer.agent_id, extension, fault.what, offer.call_id, fault.pause, fault.advice)
        with contextlib.suppress(AcdError):
            self._acd.pause(offer.agent_id, fault.pause)

    def _follow_phone_keys(self, agent_id: str, call: OutboundCall) -> None:
        """The phone's Hold key (its re-INVITE holding us) holds the customer as the console's Hold
        does: music for them, and their line told. Its Transfer key (an in-dialog REFER) transfers."""
        if hasattr(call, "on_far_hold"):
            call.on_far_hold = lambda held: self._phone_hold(agent_id, call, held)
        on_refer = getattr(call, "on_refer", None)
        if on_refer is None:
            return

        async def refer(request) -> bool:  # type: ignore[no-untyped-def]
            if request.replaces is not None:
                return await self._attended(agent_id, call, request.replaces)
            if not request.target_user:
                log.info("agent %s: the desk phone asked to transfer to %s, which names nobody", agent_id,
                         request.target_uri)
                return False
            done = self.on_phone_transfer(agent_id, request.target_user)
            entry = self._legs.get(agent_id)
            if done and entry is not None and entry.call is call:
                entry.transferred = True
            return done

        on_refer(refer)

    def _phone_hold(self, agent_id: str, call: OutboundCall, held: bool) -> None:
        entry = self._legs.get(agent_id)
        if entry is None or entry.call is not call or entry.transferred:
            return
        log.info("agent %s %s the call on the desk phone", agent_id, "held" if held else "resumed")
        try:
            self.on_phone_hold(agent_id, held)
        except ControlError as exc:
            log.info("agent %s: desk phone %s not applied: %s", agent_id, "hold" if held else "resume", exc)

    async def _attended(self, agent_id: str, call: OutboundCall, replaces: tuple[str, str, str]) -> bool:
        """REFER with Replaces: the leg is marked before the transfer runs, because the agent's
        segment ends (and the ACD moves them to wrap-up) before the outcome reaches us; after a
        success the phone sends its own BYE, so the box must not hang the leg up then."""
        entry = self._legs.get(agent_id)
        mine = entry is not None and entry.call is call
        if mine:
            entry.transferred = True
        done = False
        try:
            done = await self.on_phone_replaces(agent_id, replaces)
        finally:
            if mine and not done:
                entry.transferred = False
        return done

    async def _watch_phone(self, agent_id: str, entry: _PhoneLeg) -> None:
        """The agent put the handset down: end the call from the agent's side."""
        await entry.call.wait_ended()
        if self._legs.get(agent_id) is entry:
            del self._legs[agent_id]
            if entry.transferred:  # the phone ends its dialog after its own transfer: the call goes on
                return
            log.info("agent %s hung up the desk phone", agent_id)
            self.on_phone_hangup(agent_id)

    async def _release_after_transfer(self, agent_id: str, entry: _PhoneLeg) -> None:
        """Let the phone end its own dialog after its transfer (crossing BYEs get a 481); else we do."""
        try:
            async with asyncio.timeout(TRANSFER_BYE_GRACE_S):
                await entry.call.wait_ended()
        except TimeoutError:
            if self._legs.get(agent_id) is entry:
                await self._drop_leg(agent_id, HangupCause.AGENT_HUNG_UP)

    async def _drop_leg(self, agent_id: str, cause: HangupCause) -> None:
        entry = self._legs.pop(agent_id, None)
        if entry is None:
            return
        if entry.watcher is not None:
            entry.watcher.cancel()
        await self._hangup(entry.call, cause)

    async def _hangup(self, call: OutboundCall, cause: HangupCause) -> None:
        try:
            async with asyncio.timeout(PHONE_HANGUP_TIMEOUT_S):
                await call.hangup(cause)
        except TimeoutError:
            log.warning("desk phone call %s did not end within %.0fs", call.call_id, PHONE_HANGUP_TIMEOUT_S)

    def _spawn(self, coro, name: str) -> asyncio.Task:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent devices: %s failed: %r", task.get_name(), task.exception())
