"""The IVR menu state machine (``appliance.ivr``): pure events in, actions out."""
from __future__ import annotations

import pytest

from appliance import ivr
from appliance.ivr import (
    EnterMenu, HangUp, KeyPressed, MenuConfig, MenuPlan, MenuState, Phase, PlayPrompt, PromptEnded, RouteToQueue,
    StartTimer, StopPrompt, Target, TargetKind, TimedOut, parse_target,
)

Q = TargetKind.QUEUE
MAIN = MenuConfig(
    "main", options=(("1", Target(Q, "support")), ("2", Target(TargetKind.MENU, "sales")),
                     ("0", Target(TargetKind.REPEAT)), ("9", Target(TargetKind.HANGUP))),
    timeout_s=4.0, retries=2, invalid_prompt="sorry.wav",
)
SALES = MenuConfig("sales", options=(("1", Target(Q, "sales")), ("*", Target(TargetKind.MENU, "main"))),
                   timeout_s=3.0, retries=0, default=Target(TargetKind.HANGUP))
PLAN = MenuPlan({"main": MAIN, "sales": SALES}, first_queue="support")


def run(events: list[ivr.Event], menu: str = "main") -> tuple[MenuState, list[ivr.Action]]:
    state, actions = ivr.start(PLAN, menu)
    out = list(actions)
    for event in events:
        state, actions = ivr.step(PLAN, state, event)
        out += actions
    return state, out


def test_start_enters_the_menu_and_plays_its_prompt() -> None:
    state, actions = ivr.start(PLAN, "main")
    assert actions == (EnterMenu("main"), PlayPrompt("main"))
    assert state == MenuState("main", Phase.PROMPT, 0, ())


def test_the_timer_starts_only_when_the_prompt_ends() -> None:
    state, actions = run([PromptEnded()])
    assert actions[-1] == StartTimer(4.0) and state.phase is Phase.WAITING


def test_key_after_the_prompt_routes_to_its_queue() -> None:
    state, actions = run([PromptEnded(), KeyPressed("1")])
    assert actions[-1] == RouteToQueue("support")
    assert state.phase is Phase.DONE and state.path == ("main:1",)


def test_key_during_the_prompt_barges_in() -> None:
    state, actions = run([KeyPressed("1")])
    assert actions[-2:] == [StopPrompt(), RouteToQueue("support")]
    assert state.path == ("main:1",)


def test_nested_menu_then_key_keeps_the_whole_path() -> None:
    state, actions = run([KeyPressed("2"), PromptEnded(), KeyPressed("1")])
    assert EnterMenu("sales") in actions and PlayPrompt("sales") in actions
    assert actions[-1] == RouteToQueue("sales")
    assert state.path == ("main:2", "sales:1")


def test_menus_may_loop_back() -> None:
    state, actions = run([KeyPressed("2"), KeyPressed("*"), KeyPressed("1")])
    assert state.path == ("main:2", "sales:*", "main:1") and actions[-1] == RouteToQueue("support")


def test_timeout_replays_then_default_is_the_first_queue() -> None:
    state, actions = run([PromptEnded(), TimedOut()])
    assert actions[-1] == PlayPrompt("main") and state.misses == 1 and state.phase is Phase.PROMPT
    state, actions = run([PromptEnded(), TimedOut(), PromptEnded(), TimedOut(), PromptEnded(), TimedOut()])
    assert actions.count(PlayPrompt("main")) == 3  # the first play and two retries
    assert actions[-1] == RouteToQueue("support")
    assert state.path == ("main:timeout",) * 3 and state.phase is Phase.DONE


def test_invalid_key_replays_with_the_invalid_prompt_and_counts_as_a_miss() -> None:
    state, actions = run([PromptEnded(), KeyPressed("7")])
    assert actions[-1] == PlayPrompt("main", after_invalid=True)
    assert state.misses == 1 and state.path == ("main:7",)
    state, actions = run([KeyPressed("7"), KeyPressed("8"), KeyPressed("#")])
    assert actions[-1] == RouteToQueue("support") and state.path == ("main:7", "main:8", "main:#")


def test_invalid_prompt_is_not_asked_for_when_the_menu_has_none() -> None:
    _, actions = run([KeyPressed("5")], menu="sales")  # retries = 0: straight to its default
    assert actions[-1] == HangUp()
    plan = MenuPlan({"m": MenuConfig("m", options=(("1", Target(Q, "q")),))}, "q")
    state, _ = ivr.start(plan, "m")
    _, actions = ivr.step(plan, state, KeyPressed("5"))
    assert actions[-1] == PlayPrompt("m", after_invalid=False)


def test_misses_reset_when_entering_another_menu() -> None:
    state, _ = run([KeyPressed("7"), KeyPressed("2")])
    assert state.menu == "sales" and state.misses == 0


def test_repeat_replays_without_counting_a_miss() -> None:
    state, actions = run([PromptEnded(), KeyPressed("0")])
    assert actions[-1] == PlayPrompt("main") and state.misses == 0 and state.phase is Phase.PROMPT


def test_hangup_key_ends_the_call() -> None:
    state, actions = run([KeyPressed("9")])
    assert actions[-1] == HangUp() and state.phase is Phase.DONE


def test_default_hangup_after_the_last_retry() -> None:
    state, actions = run([PromptEnded(), TimedOut()], menu="sales")
    assert actions[-1] == HangUp() and state.path == ("sales:timeout",)


def test_stale_events_are_ignored() -> None:
    state, _ = run([])
    assert ivr.step(PLAN, state, TimedOut()) == (state, ())  # no timer runs while the prompt plays
    waiting, _ = ivr.step(PLAN, state, PromptEnded())
    assert ivr.step(PLAN, waiting, PromptEnded()) == (waiting, ())
    done, _ = ivr.step(PLAN, waiting, KeyPressed("1"))
    for event in (KeyPressed("2"), TimedOut(), PromptEnded()):
        assert ivr.step(PLAN, done, event) == (done, ())


def test_a_menu_that_does_not_exist_never_strands_the_caller() -> None:
    _, actions = ivr.start(PLAN, "gone")
    assert actions == (RouteToQueue("support"),)


@pytest.mark.parametrize("text, target", [
    ("queue:sales", Target(Q, "sales")), ("menu:main", Target(TargetKind.MENU, "main")),
    ("repeat", Target(TargetKind.REPEAT)), ("hangup", Target(TargetKind.HANGUP)),
])
def test_parse_target(text: str, target: Target) -> None:
    assert parse_target(text) == target and str(target) == text


@pytest.mark.parametrize("text", ["queue:", "sales", "menu", "repeat:x", "agent:bob", 3, None])
def test_parse_target_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        parse_target(text)
