"""A line that never confirms our answer (a SIP caller requiring 100rel that never PRACKs, a modem
that does not go off-hook): the box hangs the line up instead of leaving the caller ringing, frees
the agent and stores the call as failed (cause timeout), wherever the answer was attempted."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

import appliance.calls
from appliance.acd.agent import AgentState
from appliance.ivr import Target, TargetKind
from appliance.ivr_config import InboundRule
from appliance.lines import HangupCause
from appliance.records import CallOutcome
from tests.appliance.test_ivr_calls import menus
from tests.appliance.test_transfer import Caller, open_site


class SilentLine(Caller):
    """Its answer() never completes, as a caller that never acknowledges it."""

    async def answer(self) -> None:
        await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def short_answer_timeout(monkeypatch) -> None:
    monkeypatch.setattr(appliance.calls, "ANSWER_TIMEOUT_S", 0.2)


def _failed(call: SilentLine, rec) -> None:
    assert (rec.outcome, rec.hangup_cause) == (CallOutcome.FAILED, HangupCause.TIMEOUT)
    assert call.hangups == [HangupCause.TIMEOUT]  # the caller gets a final answer, not endless ringing


async def test_agent_answers_but_the_line_never_confirms(tmp_path: Path, caplog) -> None:
    async with open_site(tmp_path) as site:
        site.available("alice")
        call = await site.arrive("c1", SilentLine("c1"))
        await site.until(lambda: any(o.call_id == "c1" for o in site.offers("alice")), "offer to alice")
        site.acd.accept("alice", "c1")
        rec = await site.record("c1")
        _failed(call, rec)
        assert rec.agent_id == "alice"
        await site.until(lambda: site.state("alice") is not AgentState.ON_CALL, "alice no longer on the call")
    assert "did not confirm our answer within 0s" in caplog.text and "hanging up" in caplog.text
    assert "caller left as agent" not in caplog.text  # the caller did not leave: the line failed


async def test_the_line_never_confirms_the_answer_an_ivr_needs(tmp_path: Path) -> None:
    async with open_site(tmp_path, inbound=(InboundRule(Target(TargetKind.MENU, "main"), called="help"),),
                         menus=menus()) as site:
        site.available("carol")
        call = SilentLine("c2")
        call.called = "help"
        await site.arrive("c2", call)
        rec = await site.record("c2")
        _failed(call, rec)
        assert site.offers("carol") == []


async def test_the_line_never_confirms_the_answer_after_long_early_media(tmp_path: Path) -> None:
    async with open_site(tmp_path) as site:
        cfg = replace(site.center.cfg, acd=replace(site.center.cfg.acd, early_media_max_s=0.0))
        site.center.cfg = site.center._cfg = cfg  # answer the line at once while the call waits
        site.acd.login("alice")  # logged in, not available: the call waits in queue
        call = await site.arrive("c3", SilentLine("c3"))
        rec = await site.record("c3")
        _failed(call, rec)
