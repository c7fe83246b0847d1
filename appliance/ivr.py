"""IVR menus as a sans-IO state machine: events in, actions out, no clock, no audio, no line.

A caller in a menu hears its prompt, then has ``timeout_s`` to press a key. A key bound
in ``options`` goes to its target (a queue, another menu, "repeat" the prompt, or
"hangup"); a key pressed while the prompt plays stops it (barge-in). A timeout or an
unbound key replays the prompt (after ``invalid_prompt`` for an unbound key) up to
``retries`` times; after that the menu's ``default`` applies (the first queue unless set).

``start`` and ``step`` are pure: they take the menus, a frozen ``MenuState`` and an
event, and return the next state and the actions to carry out, in order. The runner
(``appliance.ivr_flow``) plays prompts, runs the timer and feeds the caller's keys in.
Every key the caller pressed, and every timeout, is kept in ``MenuState.path`` as
"<menu>:<key>" / "<menu>:timeout"; the call record stores it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Mapping

KEYS = frozenset("0123456789*#")
TIMEOUT_STEP = "timeout"  # path entry for "no key within timeout_s"
DEFAULT_TIMEOUT_S = 5.0  # after the prompt ends, a caller gets this long to press a key
DEFAULT_RETRIES = 2


class TargetKind(StrEnum):
    QUEUE = "queue"
    MENU = "menu"
    REPEAT = "repeat"
    HANGUP = "hangup"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a key (or a route, or a menu's default) sends the caller."""

    kind: TargetKind
    id: str = ""  # the queue or menu id; empty for repeat/hangup

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id else str(self.kind)


def parse_target(text: object) -> Target:
    """ "queue:ID" | "menu:ID" | "repeat" | "hangup"; ValueError with the reason otherwise."""
    if not isinstance(text, str):
        raise ValueError(f'must be a string like "queue:sales", not {type(text).__name__}')
    kind, sep, ident = text.partition(":")
    if not sep and kind in (TargetKind.REPEAT, TargetKind.HANGUP):
        return Target(TargetKind(kind))
    if sep and kind in (TargetKind.QUEUE, TargetKind.MENU) and ident:
        return Target(TargetKind(kind), ident)
    raise ValueError(f'{text!r} is not "queue:<id>", "menu:<id>", "repeat" or "hangup"')


@dataclass(frozen=True, slots=True)
class MenuConfig:
    id: str
    prompt: str = ""  # WAV path; empty (or unplayable) = a short built-in chime
    options: tuple[tuple[str, Target], ...] = ()  # key -> target, in the order configured
    timeout_s: float = DEFAULT_TIMEOUT_S  # after the prompt ends, wait this long for a key
    retries: int = DEFAULT_RETRIES  # replays after a timeout or an unbound key, then ``default``
    invalid_prompt: str = ""  # WAV played before the replay after an unbound key; empty = none
    default: Target | None = None  # None: the first queue

    def option(self, key: str) -> Target | None:
        return next((t for k, t in self.options if k == key), None)


# --- events (in) -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PromptEnded:
    """The prompt (with any invalid-key preface) finished playing."""


@dataclass(frozen=True, slots=True)
class KeyPressed:
    key: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The timer from the last ``StartTimer`` ran out."""


Event = PromptEnded | KeyPressed | TimedOut


# --- actions (out) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EnterMenu:
    menu: str


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    menu: str
    after_invalid: bool = False  # play the menu's invalid_prompt first


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Barge-in: the caller pressed a key while the prompt played."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    seconds: float


@dataclass(frozen=True, slots=True)
class RouteToQueue:
    queue: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The menu ends the call (a "hangup" key or default)."""


Action = EnterMenu | PlayPrompt | StopPrompt | StartTimer | RouteToQueue | HangUp
Actions = tuple[Action, ...]


class Phase(StrEnum):
    PROMPT = "prompt"  # the prompt is playing
    WAITING = "waiting"  # the prompt ended; the timer runs
    DONE = "done"  # routed or hung up; later events are ignored


@dataclass(frozen=True, slots=True)
class MenuState:
    menu: str
    phase: Phase = Phase.PROMPT
    misses: int = 0  # timeouts and unbound keys in this menu since entering it
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MenuPlan:
    """The menus and where a menu without a ``default`` sends a caller who never chooses."""

    menus: Mapping[str, MenuConfig]
    first_queue: str


def start(plan: MenuPlan, menu_id: str) -> tuple[MenuState, Actions]:
    return _enter(plan, MenuState(menu_id), menu_id)


def step(plan: MenuPlan, state: MenuState, event: Event) -> tuple[MenuState, Actions]:
    if state.phase is Phase.DONE:
        return state, ()
    menu = plan.menus[state.menu]
    if isinstance(event, PromptEnded):
        if state.phase is not Phase.PROMPT:
            return state, ()
        return replace(state, phase=Phase.WAITING), (StartTimer(menu.timeout_s),)
    if isinstance(event, TimedOut):
        if state.phase is not Phase.WAITING:
            return state, ()  # a stale timer: a key or a new prompt came first
        return _miss(plan, replace(state, path=state.path + (f"{menu.id}:{TIMEOUT_STEP}",)), after_invalid=False)
    barge: Actions = (StopPrompt(),) if state.phase is Phase.PROMPT else ()
    state = replace(state, path=state.path + (f"{menu.id}:{event.key}",))
    target = menu.option(event.key)
    if target is None:
        new, actions = _miss(plan, state, after_invalid=True)
    else:
        new, actions = _go(plan, state, target)
    return new, barge + actions


def _miss(plan: MenuPlan, state: MenuState, *, after_invalid: bool) -> tuple[MenuState, Actions]:
    menu = plan.menus[state.menu]
    if state.misses >= menu.retries:
        return _go(plan, state, default_target(menu, plan.first_queue))
    return (replace(state, phase=Phase.PROMPT, misses=state.misses + 1),
            (PlayPrompt(menu.id, after_invalid=after_invalid and bool(menu.invalid_prompt)),))


def _go(plan: MenuPlan, state: MenuState, target: Target) -> tuple[MenuState, Actions]:
    if target.kind is TargetKind.QUEUE:
        return replace(state, phase=Phase.DONE), (RouteToQueue(target.id),)
    if target.kind is TargetKind.HANGUP:
        return replace(state, phase=Phase.DONE), (HangUp(),)
    if target.kind is TargetKind.REPEAT:  # the caller asked: not a miss
        return replace(state, phase=Phase.PROMPT), (PlayPrompt(state.menu),)
    return _enter(plan, state, target.id)


def _enter(plan: MenuPlan, state: MenuState, menu_id: str) -> tuple[MenuState, Actions]:
    if menu_id not in plan.menus:  # config validation prevents this; never strand a caller
        return replace(state, phase=Phase.DONE), (RouteToQueue(plan.first_queue),)
    return replace(state, menu=menu_id, phase=Phase.PROMPT, misses=0), (EnterMenu(menu_id), PlayPrompt(menu_id))


def default_target(menu: MenuConfig, first_queue: str) -> Target:
    return menu.default or Target(TargetKind.QUEUE, first_queue)
