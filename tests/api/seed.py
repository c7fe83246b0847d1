"""Deterministic data put into a running box the way its own components would."""
from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from appliance.api import schema as s
from appliance.api.client import SocketClient
from appliance.lines import LineKind, LineStatus
from appliance.records import CallOutcome, CallRecord
from tests.api.running_box import RunningBox

DAY = 1_780_300_000.0  # 2026-06-01 (UTC), fixed so screenshots and searches are stable

CALLS = (
    CallRecord(call_id="c-0001", line_id="gsm0", line_kind="gsm", direction="inbound", from_number="+447700900001",
               from_name=None, to_number="+441610000000", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="caller hung up", arrived_at=DAY, enqueued_at=DAY + 1, offered_at=DAY + 2, answered_at=DAY + 9,
               ended_at=DAY + 129, wait_s=8.0, talk_s=120.0, agent_id="alice", agent_name="Alice Martin",
               disposition="resolved", offers=("alice",), recording_path="2026/06/01/c-0001.wav", recording_s=1.0),
    CallRecord(call_id="c-0002", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900002",
               from_name="Acme Ltd", to_number="support", queue="support", outcome=CallOutcome.ABANDONED,
               hangup_cause="caller hung up", arrived_at=DAY + 3600, enqueued_at=DAY + 3601, ended_at=DAY + 3650, wait_s=49.0),
    CallRecord(call_id="c-0003", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900003",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="agent hung up", arrived_at=DAY + 86400, enqueued_at=DAY + 86401, answered_at=DAY + 86405,
               ended_at=DAY + 86465, wait_s=4.0, talk_s=60.0, agent_id="bob", agent_name="Bob Okafor", disposition="follow-up",
               offers=("bob",)),
)

# what the call features added: calls placed by agents, and one customer call transferred between agents
FEATURE_CALLS = (
    CallRecord(call_id="o-0001", line_id="gsm0", line_kind="gsm", direction="outbound", from_number=None,
               from_name=None, to_number="07700900555", queue=None, outcome=CallOutcome.FAILED, hangup_cause="busy",
               arrived_at=DAY + 7200, ended_at=DAY + 7206, agent_id="alice", agent_name="Alice Martin"),
    CallRecord(call_id="o-0002", line_id="gsm0", line_kind="gsm", direction="outbound", from_number=None,
               from_name=None, to_number="07700900556", queue=None, outcome=CallOutcome.ANSWERED,
               hangup_cause="agent hung up", arrived_at=DAY + 7300, answered_at=DAY + 7305, ended_at=DAY + 7395,
               talk_s=90.0, agent_id="bob", agent_name="Bob Okafor"),
    CallRecord(call_id="c-0004", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900004",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="agent hung up", arrived_at=DAY + 7400, enqueued_at=DAY + 7401, answered_at=DAY + 7406,
               ended_at=DAY + 7466, wait_s=5.0, talk_s=60.0, agent_id="alice", agent_name="Alice Martin",
               offers=("alice",), transfer="attended", transferred_to="bob", parent_call_id="c-0004"),
    CallRecord(call_id="c-0004-2", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900004",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="caller hung up", arrived_at=DAY + 7400, answered_at=DAY + 7466, ended_at=DAY + 7526,
               talk_s=60.0, agent_id="bob", agent_name="Bob Okafor", disposition="resolved", segment=2,
               transferred_from="alice", parent_call_id="c-0004"),
)

LINES = (
    LineStatus(line_id="gsm0", kind=LineKind.GSM, state="up", detail="registered", signal=12, operator="Vodafone UK",
               registration="home", sim="ready", imei="356938035643809", iccid="8944110068256270054", model="EC25",
               firmware="EC25EFAR06A06M4G", port="/dev/ttyUSB2", updated=DAY),
    LineStatus(line_id="gsm0", kind=LineKind.GSM, state="up", detail="registered", signal=18, operator="Vodafone UK",
               registration="home", sim="ready", imei="356938035643809", iccid="8944110068256270054", model="EC25",
               firmware="EC25EFAR06A06M4G", port="/dev/ttyUSB2", updated=DAY + 300),
    LineStatus(line_id="analog0", kind=LineKind.ANALOG, state="down", detail="no dial tone on the line", port="/dev/ttyACM0",
               updated=DAY),
)


def write_wav(path: Path, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(int(8000 * seconds) * 4))


def seed_calls(rb: RunningBox) -> None:
    box = rb.box
    write_wav(box.store.recordings_dir() / "2026/06/01/c-0001.wav")
    for rec in CALLS:
        rb.call(lambda rec=rec: box.store.save_call(rec))


def seed_feature_calls(rb: RunningBox) -> None:
    for rec in FEATURE_CALLS:
        rb.call(lambda rec=rec: rb.box.store.save_call(rec))


async def publish_lines(rb: RunningBox) -> None:
    async with SocketClient(rb.run_dir) as client:
        stream = client.events()
        first = await anext(stream)
        assert isinstance(first, s.SiteSnapshot)
        for status in LINES:
            await rb.acall(lambda st=status: rb.box.hub.topic("lines").publish(st))
        seen = 0
        async with asyncio.timeout(10):
            async for ev in stream:
                if isinstance(ev, s.LineChanged):
                    seen += 1
                    if seen == len(LINES):
                        break
        await stream.aclose()


def seed_lines(rb: RunningBox) -> None:
    """Publish line statuses as drivers do, and return once the API has them."""
    asyncio.run(publish_lines(rb))
