"""Runs one answered caller through the IVR menus (``appliance.ivr``) and says where they went.

The line must already be answered (GSM and analog lines only pass DTMF after answer).
Prompts play to the caller through a ``Bridge`` whose other leg is a ``PromptPlayer``;
the caller's keys arrive through ``LiveCall.listen_dtmf`` and a key pressed during a
prompt stops it. The caller hanging up (or the box stopping) ends the run with
``MenuResult.left`` set: never an exception. ``CallCenter`` turns the result into a
queue or a stored record.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
import time
from typing import Callable, Mapping, Protocol

from appliance import ivr
from appliance.call_events import LiveState
from appliance.call_support import AnswerFailed, hang_up
from appliance.config import BoxConfig, QueueConfig
from appliance.lines import CallGone, HangupCause
from appliance.live_call import LiveCall
from appliance.records import CallOutcome, CallRecord
from media.bridge import Bridge
from media.call_audio import PromptPlayer, chime_pcm, load_prompts

log = logging.getLogger(__name__)

MENU_EVENTS_MAX = 32  # keys and prompt ends not yet handled; a caller cannot outpace this, extra keys are dropped
MENU_HUNG_UP = "menu hung up"  # hangup_cause of a call a menu ended
MENU_MAX_S = 300.0  # a caller still in the menus after this (repeat, loops by key) goes to the first queue


class MenuCalls(Protocol):
    """What serving a caller in the menus uses from the box (the ``CallCenter`` implements it)."""

    cfg: BoxConfig
    stopping: asyncio.Event

    def queue_config(self, queue_id: str) -> QueueConfig | None: ...
    def set_state(self, lc: LiveCall, state: LiveState, cause: str | None = None) -> None: ...
    async def answer_line(self, lc: LiveCall) -> None: ...
    async def finish(self, lc: LiveCall, rec: CallRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class MenuResult:
    path: tuple[str, ...]  # "<menu>:<key>" / "<menu>:timeout", in order
    queue: str | None = None  # where the caller goes; None: the call ends here
    left: HangupCause | None = None  # the caller hung up (or the box is stopping); None: the menu decided

    def record(self, rec: CallRecord, now: float) -> CallRecord:
        """The stored record of a call that ended in the menu (``queue`` is None)."""
        if self.left is HangupCause.SHUTDOWN:
            outcome, cause = CallOutcome.NO_AGENT, str(HangupCause.SHUTDOWN)
        elif self.left is not None:
            outcome, cause = CallOutcome.ABANDONED, str(self.left)
        else:
            outcome, cause = CallOutcome.MENU_ENDED, MENU_HUNG_UP
        return replace(rec, ivr=self.path, outcome=outcome, hangup_cause=cause, ended_at=now)


class Menus:
    """The configured menus and their decoded prompts; one ``run`` per caller."""

    def __init__(self, cfg: BoxConfig) -> None:
        self._plan = ivr.MenuPlan({m.id: m for m in cfg.menus}, cfg.queues[0].id)
        self._first_queue = cfg.queues[0].id
        self._menus = cfg.menus
        self._prompts: Mapping[str, bytes] = {}
        self._chime = chime_pcm()

    async def prepare(self) -> None:
        """Decode every prompt once, off the event loop (unplayable files: a warning and the chime)."""
        if self._menus:
            self._prompts = await asyncio.get_running_loop().run_in_executor(None, load_prompts, self._menus)

    def clips(self, play: ivr.PlayPrompt) -> tuple[bytes, ...]:
        prompt = self._prompts.get(play.menu, self._chime)
        invalid = self._prompts.get(f"{play.menu}:invalid") if play.after_invalid else None
        return (invalid, prompt) if invalid else (prompt,)

    async def serve(self, calls: MenuCalls, lc: LiveCall, rec: CallRecord, ended: asyncio.Future) -> CallRecord | None:
        """Answer and run the caller through the menus: the record going on to the chosen queue
        (then ``lc.queue``), or None once the call ended in the menu and its record is stored."""
        assert lc.menu is not None
        try:
            await calls.answer_line(lc)
        except (CallGone, AnswerFailed) as exc:
            failed = isinstance(exc, AnswerFailed)
            await calls.finish(lc, replace(rec, outcome=CallOutcome.FAILED if failed else CallOutcome.ABANDONED,
                                           hangup_cause=HangupCause.TIMEOUT if failed else HangupCause.CALLER_HUNG_UP,
                                           ended_at=time.time()))
            return None

        def entered(menu_id: str) -> None:
            lc.menu = menu_id
            calls.set_state(lc, LiveState.IVR)

        result = await self.run(lc, lc.menu, ended, calls.stopping, entered)
        if result.queue is None:
            if result.left is None or result.left is HangupCause.SHUTDOWN:
                await hang_up(lc.call, result.left or HangupCause.REJECTED)
            await calls.finish(lc, result.record(rec, time.time()))
            return None
        lc.queue, lc.menu = calls.queue_config(result.queue) or calls.cfg.queues[0], None
        return replace(rec, queue=lc.queue.id, ivr=result.path)

    async def run(self, lc: LiveCall, menu_id: str, ended: asyncio.Future, stopping: asyncio.Event,
                  on_menu: Callable[[str], None]) -> MenuResult:
        events: asyncio.Queue[ivr.Event] = asyncio.Queue(maxsize=MENU_EVENTS_MAX)
        dropped = 0

        def put(event: ivr.Event) -> None:
            nonlocal dropped
            try:
                events.put_nowait(event)
            except asyncio.QueueFull:
                dropped += 1

        player = PromptPlayer(on_end=lambda: put(ivr.PromptEnded()))
        bridge = Bridge(lc.call.audio, player, None, name=f"ivr:{lc.call.call_id}")
        unlisten = lc.listen_dtmf(lambda key: put(ivr.KeyPressed(key)))
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        give_up_at = loop.time() + MENU_MAX_S
        state, actions = ivr.start(self._plan, menu_id)
        bridge.start()
        try:
            while True:
                for action in actions:
                    if isinstance(action, ivr.EnterMenu):
                        on_menu(action.menu)
                    elif isinstance(action, ivr.PlayPrompt):
                        player.play(*self.clips(action))
                    elif isinstance(action, ivr.StopPrompt):
                        player.stop()
                    elif isinstance(action, ivr.StartTimer):
                        deadline = loop.time() + action.seconds
                    elif isinstance(action, ivr.RouteToQueue):
                        log.info("call %s: menu path %s -> queue %s", lc.call.call_id, " ".join(state.path) or "-", action.queue)
                        return MenuResult(state.path, queue=action.queue)
                    else:
                        log.info("call %s: menu path %s -> hang up", lc.call.call_id, " ".join(state.path) or "-")
                        return MenuResult(state.path)
                if state.phase is not ivr.Phase.WAITING:
                    deadline = None
                wait = give_up_at - loop.time() if deadline is None else min(deadline, give_up_at) - loop.time()
                event = await _next_event(events, ended, stopping, wait)
                if isinstance(event, ivr.TimedOut) and loop.time() >= give_up_at:
                    log.info("call %s: still in the menus after %.0f s (%s); to queue %s", lc.call.call_id,
                             MENU_MAX_S, " ".join(state.path) or "no key", self._first_queue)
                    return MenuResult(state.path + (f"{state.menu}:time limit",), queue=self._first_queue)
                if event is None:
                    left = _why_left(ended)
                    log.info("call %s: left the menu (%s) after %s", lc.call.call_id, left, " ".join(state.path) or "no key")
                    return MenuResult(state.path, left=left)
                if isinstance(event, ivr.PromptEnded) and player.playing:
                    continue  # the end of a prompt a key already replaced
                state, actions = ivr.step(self._plan, state, event)
        finally:
            unlisten()
            await bridge.stop()
            if dropped:
                log.warning("call %s: %d menu key(s) dropped (more than %d pending)", lc.call.call_id, dropped, MENU_EVENTS_MAX)


def _why_left(ended: asyncio.Future) -> HangupCause:
    if not ended.done() or ended.cancelled():
        return HangupCause.SHUTDOWN  # the call is up: the box is stopping
    return HangupCause.ERROR if ended.exception() is not None else HangupCause(ended.result())


async def _next_event(events: asyncio.Queue[ivr.Event], ended: asyncio.Future, stopping: asyncio.Event,
                      timeout: float | None) -> ivr.Event | None:
    """The next key or prompt end; TimedOut after ``timeout``; None when the call ended or the box stops."""
    if ended.done() or stopping.is_set():
        return None
    if not events.empty():
        return events.get_nowait()
    get = asyncio.ensure_future(events.get())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({get, ended, stop}, timeout=None if timeout is None else max(timeout, 0.0),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not get.done():
            get.cancel()
    if ended in done or stop in done:
        return None  # a key in the same instant no longer matters
    if get in done:
        return get.result()
    return ivr.TimedOut()
