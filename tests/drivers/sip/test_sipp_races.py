"""SIPp callers that race our SipLine: a retransmitted INVITE, and CANCEL before, after and
against the answer (RFC 3261 §9.2, §13.3.1.4, §17.2.1). SIPp is the caller, the line the UAS.

Each scenario checks its own path; the test also reads back the whole exchange from SIPp's
-trace_msg log (retransmissions included) and compares it with what RFC 3261 requires.
The retransmission scenarios run with -nr: SIPp would otherwise take our re-sent 180/200 for
a retransmission and answer it by re-sending its INVITE, a ping-pong. The handler's answer
delay is a timer inside the handler; the test body only waits for the handler, always under
a timeout.
"""
from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.lines import CallGone, HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from tests.drivers.sip.test_sipp import SCENARIO_DIR, _free_port, _run_sipp, pytestmark  # noqa: F401

RING_BEFORE_ANSWER_S = 1.5  # the handler's answer delay while SIPp retransmits its INVITE
HANDLER_END_WAIT_S = 10.0  # bounds the handler's waits for the call to end (SIPp hangs up within ~2 s)
CALLS_END_WAIT_S = 5.0  # after SIPp exits, time for the last handlers to record their call's end
RACE_CALLS = 40
RACE_RATE = 10  # calls per second

AnswerWait = Callable[[object], Awaitable[None]]  # what the handler awaits between its 180 and its answer


async def at_once(call) -> None:
    """Answer in the same loop step as the 180: a CANCEL can only arrive after the 200."""


async def when_ended(call) -> None:
    """Never answer while the call is up; try once it has ended (the answer must be refused)."""
    async with asyncio.timeout(HANDLER_END_WAIT_S):
        await call.wait_ended()


def after(seconds: float) -> AnswerWait:
    async def wait(call) -> None:
        try:
            async with asyncio.timeout(seconds):
                await call.wait_ended()
        except TimeoutError:
            pass
    return wait


def after_turns(turns: int) -> AnswerWait:
    """Answer after ``turns`` event-loop iterations: about as long as SIPp takes to send its CANCEL
    after our 180 (tens to hundreds of microseconds), so the two really race."""
    async def wait(call) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
    return wait


# Cycled over the race's calls: at_once always wins, when_ended always loses, the rest race.
RACE_WAITS: tuple[AnswerWait, ...] = (at_once, *(after_turns(t) for t in (1, 2, 4, 8, 16, 32, 64)), when_ended)


@dataclass
class Ringer:
    """The handler: rings (180), awaits ``wait(n)`` for the n-th call, answers (a ``CallGone`` is
    counted as refused) and records how each call ended."""

    wait: Callable[[int], AnswerWait] = lambda n: at_once
    expected: int = 1
    seen: int = 0
    answered: int = 0
    refused: int = 0  # answer() raised CallGone: the CANCEL won
    causes: list[HangupCause | None] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, call) -> None:
        wait = self.wait(self.seen)
        self.seen += 1
        try:
            await call.progress()
            await wait(call)
            try:
                await call.answer()
                self.answered += 1
            except CallGone:
                self.refused += 1
            async with asyncio.timeout(HANDLER_END_WAIT_S):
                self.causes.append(await call.wait_ended())
        except TimeoutError:
            self.causes.append(None)
        finally:
            if len(self.causes) >= self.expected:
                self.done.set()

    async def wait_done(self) -> None:
        async with asyncio.timeout(CALLS_END_WAIT_S):
            await self.done.wait()


@dataclass(frozen=True, slots=True)
class Seen:
    """One SIP message in SIPp's -trace_msg log."""

    sent: bool
    what: str  # "INVITE" for a request, "180 INVITE" for a response (status and CSeq method)
    to_tag: str


_TRACE_SPLIT = re.compile(r"^-{20,}.*$", re.MULTILINE)
_TO_TAG = re.compile(r"^To:.*;tag=([^;\s]+)", re.MULTILINE | re.IGNORECASE)
_CSEQ = re.compile(r"^CSeq:\s*\d+\s+(\S+)", re.MULTILINE | re.IGNORECASE)


def sipp_messages(cwd: Path) -> list[Seen]:
    """Every SIP message SIPp sent or received (retransmissions included), in order."""
    seen: list[Seen] = []
    for log in sorted(cwd.glob("*_messages.log")):
        for block in _TRACE_SPLIT.split(log.read_text(errors="replace")):
            head, _, msg = block.strip().partition("\n\n")
            if "message" not in head or not msg.strip():
                continue
            first = msg.strip().splitlines()[0].split()
            cseq, tag = _CSEQ.search(msg), _TO_TAG.search(msg)
            what = f"{first[1]} {cseq.group(1) if cseq else '?'}" if first[0].startswith("SIP/") else first[0]
            seen.append(Seen("sent" in head, what, tag.group(1) if tag else ""))
    return seen


def flow(messages: list[Seen]) -> list[str]:
    """``> INVITE`` / ``< 180 INVITE``: the exchange as SIPp saw it."""
    return [("> " if m.sent else "< ") + m.what for m in messages]


async def run_caller(line: SipLine, scenario: str, cwd: Path, *extra: str) -> None:
    rc, log = await _run_sipp(
        [f"127.0.0.1:{line.udp_port}", "-sf", str(SCENARIO_DIR / scenario), "-i", "127.0.0.1",
         "-p", str(_free_port()), "-mp", str(_free_port(even_pair=True)), "-nostdin", "-trace_err",
         "-trace_msg", "-trace_logs", *extra], cwd)
    assert rc == 0, log + "\n".join(flow(sipp_messages(cwd)))


@pytest.fixture
async def ringing_line():
    """A running line and its handler; each test sets how the handler answers before calling."""
    ringer = Ringer()
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None), ringer)
    await line.start()
    yield ringer, line
    await line.stop()


async def test_invite_retransmitted_while_ringing_gets_the_180_again(ringing_line, tmp_path: Path) -> None:
    handler, line = ringing_line
    handler.wait = lambda n: after(RING_BEFORE_ANSWER_S)
    await run_caller(line, "uac_invite_retransmit_ringing.xml", tmp_path, "-m", "1", "-nr")
    await handler.wait_done()
    messages = sipp_messages(tmp_path)
    assert flow(messages) == ["> INVITE", "< 100 INVITE", "< 180 INVITE",
                              "> INVITE", "< 180 INVITE",  # §17.2.1: the last provisional, re-sent
                              "< 200 INVITE", "> ACK", "> BYE", "< 200 BYE"]
    assert messages[2] == messages[4]  # the same 180 (same To-tag), not a second call's
    assert (handler.seen, handler.answered, handler.causes) == (1, 1, [HangupCause.CALLER_HUNG_UP])
    assert line.statistics().calls_total == 1 and line.active_calls == 0


async def test_invite_retransmitted_after_the_200_gets_the_200_again(ringing_line, tmp_path: Path) -> None:
    handler, line = ringing_line
    await run_caller(line, "uac_invite_retransmit_answered.xml", tmp_path, "-m", "1", "-nr")
    await handler.wait_done()
    messages = sipp_messages(tmp_path)
    assert flow(messages) == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "< 200 INVITE",
                              "> INVITE", "< 200 INVITE",  # §13.3.1.4: the 200 again, no 100, no new call
                              "> ACK", "> BYE", "< 200 BYE"]
    assert messages[3] == messages[5]  # the same dialog (To-tag)
    assert (handler.seen, handler.answered, handler.causes) == (1, 1, [HangupCause.CALLER_HUNG_UP])
    assert line.statistics().calls_total == 1 and line.active_calls == 0


async def test_cancel_while_ringing_gets_487_and_the_call_is_never_answered(ringing_line, tmp_path: Path) -> None:
    handler, line = ringing_line
    handler.wait = lambda n: when_ended
    await run_caller(line, "uac_cancel_race.xml", tmp_path, "-m", "1")
    await handler.wait_done()
    messages = sipp_messages(tmp_path)
    # one 487 only: the ACK (INVITE's branch) stopped Timer G during SIPp's 700 ms timewait
    assert flow(messages) == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "> CANCEL", "< 200 CANCEL",
                              "< 487 INVITE", "> ACK"]
    assert messages[2].to_tag == messages[4].to_tag == messages[5].to_tag  # §9.2: one To-tag
    assert (handler.seen, handler.answered, handler.refused) == (1, 0, 1)  # answering later: CallGone
    assert handler.causes == [HangupCause.CANCELLED]
    assert line.active_calls == 0


async def test_cancel_after_the_200_has_no_effect(ringing_line, tmp_path: Path) -> None:
    handler, line = ringing_line
    await run_caller(line, "uac_cancel_after_200.xml", tmp_path, "-m", "1")
    await handler.wait_done()
    # no BYE from us, no 481 for SIPp's BYE: the call stayed up until the caller hung up
    assert flow(sipp_messages(tmp_path)) == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "< 200 INVITE",
                                             "> CANCEL", "< 200 CANCEL", "> ACK", "> BYE", "< 200 BYE"]
    assert (handler.seen, handler.answered, handler.causes) == (1, 1, [HangupCause.CALLER_HUNG_UP])
    assert line.active_calls == 0


async def test_cancel_racing_the_answer_never_loses_a_call(ringing_line, tmp_path: Path) -> None:
    handler, line = ringing_line
    handler.wait = lambda n: RACE_WAITS[n % len(RACE_WAITS)]
    handler.expected = RACE_CALLS
    await run_caller(line, "uac_cancel_race.xml", tmp_path, "-m", str(RACE_CALLS), "-r", str(RACE_RATE),
                     "-trace_stat", "-fd", "1")
    await handler.wait_done()
    stats = max(tmp_path.glob("*_.csv")).read_text().splitlines()
    row = dict(zip(stats[0].split(";"), stats[-1].split(";")))
    assert int(row["SuccessfulCall(C)"]) == RACE_CALLS and int(row["FailedCall(C)"]) == 0, row
    outcomes = Counter(entry.split()[1] for log in tmp_path.glob("*_logs.log")
                       for entry in log.read_text().splitlines() if entry.startswith("outcome "))
    print(f"cancel race: {dict(outcomes)}")
    assert sum(outcomes.values()) == RACE_CALLS
    assert outcomes["answered"] > 0 and outcomes["cancelled"] > 0  # at_once and when_ended force each
    assert handler.seen == RACE_CALLS and handler.answered == outcomes["answered"]
    assert handler.refused == outcomes["cancelled"]
    assert Counter(handler.causes) == {HangupCause.CALLER_HUNG_UP: outcomes["answered"],
                                       HangupCause.CANCELLED: outcomes["cancelled"]}
    assert line.statistics().calls_total == RACE_CALLS and line.active_calls == 0
