"""A box set up for the call features (outbound, desk phones, dial plan) and the two fakes it needs.

``ScriptedLine`` is a line the test drives (it rings until told to answer or fail); it is put
into the running box's ``LineManager`` so the box's real dial plan, outbound call flow, store,
feed and local API handle its calls. ``FakeAgentMedia`` stands in for an agent's connected
browser audio. Both live on the box's loop: create and drive them with ``RunningBox.call``.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, LineKind
from media.frames import FRAME_BYTES
from tests.api.running_box import RunningBox

CONFIG = """\
[box]
branch = "test-branch"

[sip]
bind = "127.0.0.1"
port = 0
users = [["201", "secret"], ["202", "secret-202"]]
auth_algorithms = ["MD5"]

[web]
bind = "127.0.0.1"
port = 0

[simulators]
gsm = false
analog = false

[[queues]]
id = "support"
name = "Support"

[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-secret"
queues = ["support"]

[[agents]]
id = "bob"
name = "Bob Okafor"
password = "bob-secret"
queues = ["support"]
"""
DIAL_PLAN = """
[[dial_plan]]
name = "mobiles"
pattern = '07\\d{9}'
via = ["gsm", "trunk"]
strip = 1
prepend = "+44"

[[dial_plan]]
name = "anything else"
pattern = '.+'
via = ["trunk"]
"""
SCRIPTED_LINE = "gsm:356938035643809"
SILENCE = bytes(FRAME_BYTES)
_ids = itertools.count(1)


class FakeLeg:
    def read_frame_nowait(self) -> bytes | None:
        return SILENCE

    def write_frame(self, pcm: bytes) -> None:
        pass


class FakeAgentMedia(FakeLeg):
    """An agent's connected console audio, as the box's ``Sessions`` holds it (no browser)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = asyncio.Event()
        self.connected.set()
        self.ended = asyncio.Event()

    async def close(self) -> None:
        self.ended.set()


class ScriptedCall:
    kind = LineKind.GSM

    def __init__(self, line_id: str, number: str) -> None:
        loop = asyncio.get_running_loop()
        self.call_id = f"scripted-{next(_ids)}"
        self.line_id = line_id
        self.called = number
        self.audio = FakeLeg()
        self._answer: asyncio.Future[DialFailure | None] = loop.create_future()
        self._ended: asyncio.Future[HangupCause] = loop.create_future()

    # --- what the test does (on the box's loop) ----------------------------------------------
    def answer(self) -> None:
        self._answer.set_result(None)

    def fail(self, reason: DialFailure) -> None:
        self._answer.set_result(reason)
        self._ended.set_result(HangupCause.REJECTED)

    def far_end_hangs_up(self) -> None:
        self._ended.set_result(HangupCause.CALLER_HUNG_UP)

    # --- the OutboundCall contract -----------------------------------------------------------
    async def wait_answered(self) -> None:
        failure = await asyncio.shield(self._answer)
        if failure is not None:
            raise DialFailed(failure, "scripted")

    async def hangup(self, cause: HangupCause) -> None:
        if not self._answer.done():
            self._answer.set_result(DialFailure.CANCELLED)
        if not self._ended.done():
            self._ended.set_result(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback) -> None:
        pass

    async def send_dtmf(self, digit: str) -> bool:
        return False


class ScriptedLine:
    """A GSM-like line whose calls ring until the test answers or fails them."""

    kind = "gsm"

    def __init__(self, line_id: str = SCRIPTED_LINE) -> None:
        self.line_id = line_id
        self.calls: list[ScriptedCall] = []

    async def dial(self, number: str, caller: CallerId | None = None) -> ScriptedCall:
        call = ScriptedCall(self.line_id, number)
        self.calls.append(call)
        return call


def start_features_box(root: Path) -> RunningBox:
    (root / "branchline.toml").write_text(CONFIG + DIAL_PLAN)
    return RunningBox(root).start()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[RunningBox]:
    """The features box (scripted line, dial plan) for one test; the api and tui conftests offer it."""
    rb = start_features_box(tmp_path)
    try:
        yield rb
    finally:
        rb.stop()


def install_line(rb: RunningBox) -> ScriptedLine:
    line = ScriptedLine()

    def put() -> None:
        rb.box.lines.lines["scripted"] = line

    rb.call(put)
    return line


def connect_agent(rb: RunningBox, agent_id: str) -> FakeAgentMedia:
    """The agent logged in (paused) with its console audio connected: it may place calls."""

    def connect() -> FakeAgentMedia:
        session, _ = rb.box.sessions.create(agent_id)
        session.media = FakeAgentMedia(f"agent:{agent_id}")
        rb.box.acd.login(agent_id)
        return session.media

    return rb.call(connect)
