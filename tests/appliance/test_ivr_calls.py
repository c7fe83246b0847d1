"""Inbound routes and IVR menus through the real CallCenter, ACD, bridge and feed, with fake lines
(the harness of ``test_transfer``): keys route to queues, barge-in, timeouts, invalid keys, nested
menus, a caller leaving in the menu, and the no-agent check on the queue the caller chose."""
from __future__ import annotations

import asyncio
import logging
import time
import wave
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np
import pytest

from appliance.api.views import call_view
from appliance.call_events import LiveCallSnapshot, LiveState
from appliance.ivr import MenuConfig, Target, TargetKind
from appliance.ivr_config import InboundRule
from appliance.lines import HangupCause
from appliance.records import CallOutcome
from media.call_audio import chime_pcm
from media.frames import FRAME_BYTES
from tests.appliance.test_transfer import Caller, Site, open_site

Q, M = TargetKind.QUEUE, TargetKind.MENU
CHIME_START = chime_pcm()[:FRAME_BYTES]  # the built-in prompt's first frame
TIMEOUT_S = 0.3  # the menus' key timeout, short for tests


class MenuCaller(Caller):
    """A caller who dials a number and can press keys (RFC 4733 / in-band, as the line reports them)."""

    def __init__(self, call_id: str, called: str = "help") -> None:
        super().__init__(call_id)
        self.called = called
        self.answers = 0
        self._dtmf: list[Callable[[str], None]] = []

    async def answer(self) -> None:
        self.answers += 1

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self._dtmf.append(callback)

    def press(self, key: str) -> None:
        for callback in self._dtmf:
            callback(key)

    def heard_count(self, frame: bytes) -> int:
        return sum(1 for f in self.audio.heard if f == frame)


def tone_wav(path: Path, seconds: float, freq: float) -> Path:
    n = np.arange(int(8000 * seconds))
    pcm = (8000 * np.sin(2 * np.pi * freq * n / 8000)).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(pcm)
    return path


def menus(main_prompt: str = "", invalid_prompt: str = "", more_prompt: str = "") -> tuple[MenuConfig, ...]:
    return (
        MenuConfig("main", main_prompt, (("1", Target(Q, "support")), ("2", Target(Q, "sales")), ("3", Target(M, "more")),
                                         ("9", Target(TargetKind.HANGUP))),
                   timeout_s=TIMEOUT_S, retries=1, invalid_prompt=invalid_prompt),
        MenuConfig("more", more_prompt, (("1", Target(Q, "sales")), ("*", Target(M, "main"))),
                   timeout_s=TIMEOUT_S, retries=0, default=Target(TargetKind.HANGUP)),
    )


ROUTES = (InboundRule(Target(Q, "sales"), called="sales"), InboundRule(Target(M, "main"), called="help|main"))


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with open_site(tmp_path, inbound=ROUTES, menus=menus()) as s:
        yield s


def live(site: Site, call: Caller) -> LiveCallSnapshot | None:
    return next((c for c in site.center.live_calls() if c.call_id == call.call_id), None)


async def in_menu(site: Site, call: Caller, menu: str = "main") -> None:
    await site.until(lambda: (s := live(site, call)) is not None and s.state is LiveState.IVR and s.menu == menu,
                     f"{call.call_id} in menu {menu}")


async def offered(site: Site, call: Caller, agent_id: str) -> None:
    await site.until(lambda: any(o.call_id == call.call_id for o in site.offers(agent_id)), f"offer to {agent_id}")


async def test_key_routes_to_its_queue_and_the_wait_starts_there(site: Site) -> None:
    site.available("alice", "carol")
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    snap = live(site, call)
    assert call.answers == 1  # an IVR answers the line: GSM and analog give no DTMF before answer
    assert snap.queue_id is None and call_view(snap).state == "ivr" and call_view(snap).menu == "main"
    pressed_at = time.time()
    call.press("2")
    await offered(site, call, "carol")
    assert site.offers("alice") == []
    assert live(site, call).queue_id == "sales" and live(site, call).menu is None
    site.acd.accept("carol", "c1")
    await site.until(lambda: site.bridged(call) is site.audio.legs["carol"], "carol bridged")
    call.leaves()
    rec = await site.record("c1")
    assert (rec.queue, rec.ivr, rec.outcome, rec.agent_id) == ("sales", ("main:2",), CallOutcome.ANSWERED, "carol")
    assert rec.arrived_at <= pressed_at <= rec.enqueued_at  # the queue wait (ASA, service level) excludes the menu
    assert rec.wait_s == pytest.approx(rec.answered_at - rec.enqueued_at)
    assert rec.dtmf == ""  # menu keys are in ``ivr``; ``dtmf`` is what was pressed while talking
    await site.until(lambda: site.queue_stats("sales") == (1, 1, 0), "sales counted once")
    assert site.queue_stats("support") == (0, 0, 0)


async def test_direct_route_by_called_number_skips_the_menus(site: Site) -> None:
    site.available("alice", "carol")
    call = await site.arrive("c1", MenuCaller("c1", called="sales"))
    await offered(site, call, "carol")
    assert call.answers == 0 and live(site, call).queue_id == "sales"  # early media as before: no answer yet
    assert not any(getattr(e, "call", None) and e.call.state is LiveState.IVR for e in site.events)


async def test_unmatched_call_goes_to_the_first_queue(site: Site) -> None:
    site.available("alice", "carol")
    call = await site.arrive("c1", MenuCaller("c1", called="0800123456"))
    await offered(site, call, "alice")
    assert call.answers == 0


async def test_key_during_the_prompt_stops_it(tmp_path: Path) -> None:
    long_prompt = tone_wav(tmp_path / "main.wav", seconds=4.0, freq=500.0)
    async with open_site(tmp_path, inbound=ROUTES, menus=menus(main_prompt=str(long_prompt))) as site:
        site.available("alice")
        call = await site.arrive("c1", MenuCaller("c1"))
        await in_menu(site, call)
        from media.tones import decode_to_internal

        await call.audio.hears(decode_to_internal(long_prompt)[FRAME_BYTES * 5:FRAME_BYTES * 6])  # inside the prompt
        assert call.heard_count(CHIME_START) == 0  # the file plays, not the chime
        started = time.monotonic()
        call.press("3")  # to menu "more", whose prompt is the built-in chime
        await in_menu(site, call, "more")
        await call.audio.hears(CHIME_START)
        assert time.monotonic() - started < 1.0  # not after the 4 s prompt


async def test_timeout_replays_the_prompt_then_the_default_queue(site: Site) -> None:
    site.available("alice", "carol")
    call = await site.arrive("c1", MenuCaller("c1"))
    await offered(site, call, "alice")  # main has no default: the first queue
    assert call.heard_count(CHIME_START) == 2  # the prompt, then one retry
    call.leaves()
    rec = await site.record("c1")
    assert rec.ivr == ("main:timeout", "main:timeout") and rec.queue == "support"
    assert rec.outcome is CallOutcome.ABANDONED and rec.enqueued_at is not None


async def test_invalid_key_plays_the_invalid_prompt_then_the_menu_again(tmp_path: Path, caplog: Any) -> None:
    sorry = tone_wav(tmp_path / "sorry.wav", seconds=0.2, freq=400.0)
    with caplog.at_level(logging.INFO):
        async with open_site(tmp_path, inbound=ROUTES,
                             menus=menus(invalid_prompt=str(sorry), more_prompt=str(tmp_path / "missing.wav"))) as site:
            assert "menu more: prompt" in caplog.text and "missing.wav cannot be played" in caplog.text
            site.available("alice")
            call = await site.arrive("c1", MenuCaller("c1"))
            await in_menu(site, call)
            heard_before = len(call.audio.heard)
            call.press("7")  # during the first prompt
            await call.audio.hears(CHIME_START)  # the menu's prompt again ...
            sorry_heard = [f for f in call.audio.heard[heard_before:] if dominant_hz(f) == pytest.approx(400, abs=50)]
            assert len(sorry_heard) >= 8  # ... after the 0.2 s invalid prompt
            call.press("1")
            await offered(site, call, "alice")
            call.leaves()
            assert (await site.record("c1")).ivr == ("main:7", "main:1")


def dominant_hz(frame: bytes) -> float:
    x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    if not x.any():
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))])


async def test_nested_menu_routes_and_keeps_the_path(site: Site) -> None:
    site.available("alice", "carol")
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    call.press("3")
    await in_menu(site, call, "more")
    call.press("1")
    await offered(site, call, "carol")
    call.leaves()
    rec = await site.record("c1")
    assert rec.ivr == ("main:3", "more:1") and rec.queue == "sales"


async def test_caller_hanging_up_in_the_menu_is_stored_not_raised(site: Site) -> None:
    site.available("alice")
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    call.press("3")
    await in_menu(site, call, "more")
    call.leaves()
    rec = await site.record("c1")
    assert (rec.outcome, rec.hangup_cause, rec.ivr) == (CallOutcome.ABANDONED, "caller hung up", ("main:3",))
    assert rec.queue is None and rec.enqueued_at is None and rec.wait_s is None
    await site.until(lambda: live(site, call) is None, "call gone")
    assert site.tasks[0].done() and site.tasks[0].exception() is None
    assert site.queue_stats("support") == (0, 0, 0)  # never queued: not an abandoned queue call


async def test_hangup_key_and_hangup_default_end_the_call(site: Site) -> None:
    site.available("alice")
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    call.press("9")
    rec = await site.record("c1")
    assert (rec.outcome, rec.hangup_cause, rec.ivr) == (CallOutcome.MENU_ENDED, "menu hung up", ("main:9",))
    assert call.hangups  # the box ended it

    call2 = await site.arrive("c2", MenuCaller("c2"))
    await in_menu(site, call2)
    call2.press("3")  # "more": no retries, default hangup
    rec2 = await site.record("c2")
    assert rec2.ivr == ("main:3", "more:timeout") and rec2.outcome is CallOutcome.MENU_ENDED


async def test_nobody_in_the_chosen_queue_is_turned_away_after_the_menu(site: Site) -> None:
    site.available("alice")  # support only; carol (sales) is logged out
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    call.press("2")
    rec = await site.record("c1")
    assert (rec.outcome, rec.hangup_cause, rec.queue, rec.ivr) == (CallOutcome.NO_AGENT, "no agent available", "sales", ("main:2",))
    assert call.hangups == [HangupCause.NO_AGENT] and rec.enqueued_at is None


async def test_nobody_logged_in_anywhere_is_turned_away_before_the_menu(site: Site) -> None:
    call = MenuCaller("c1")
    site.tasks.append(asyncio.create_task(site.center.handle_inbound(call), name="test-call:c1"))
    rec = await site.record("c1")
    assert (rec.outcome, rec.ivr, rec.queue) == (CallOutcome.NO_AGENT, (), None)
    assert call.answers == 0 and call.hangups == [HangupCause.NO_AGENT]
    assert rec.customer_id == "cust-1"  # the missed contact is in the caller's history


async def test_shutdown_in_the_menu_hangs_up_and_stores_the_record(site: Site) -> None:
    site.available("alice")
    call = await site.arrive("c1", MenuCaller("c1"))
    await in_menu(site, call)
    await site.center.shutdown(5.0)
    rec = await site.record("c1")
    assert (rec.outcome, rec.hangup_cause) == (CallOutcome.NO_AGENT, "box shutting down")
    assert call.hangups == [HangupCause.SHUTDOWN]


async def test_a_caller_still_in_the_menus_at_the_time_limit_goes_to_the_first_queue(tmp_path: Path,
                                                                                      monkeypatch: Any) -> None:
    from appliance import ivr_flow

    monkeypatch.setattr(ivr_flow, "MENU_MAX_S", 0.5)  # a long key timeout: only the overall limit can end it
    slow = (MenuConfig("main", "", (("1", Target(Q, "sales")),), timeout_s=60.0, retries=0),)
    async with open_site(tmp_path, inbound=ROUTES, menus=slow) as site:
        site.available("alice")
        call = await site.arrive("c1", MenuCaller("c1"))
        await in_menu(site, call)
        await offered(site, call, "alice")  # support, the first queue
        call.leaves()
        rec = await site.record("c1")
        assert rec.ivr == ("main:time limit",) and rec.queue == "support"
