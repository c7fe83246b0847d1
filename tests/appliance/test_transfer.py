"""Call transfer through the real CallCenter, ACD and bridge, with fake line legs, fake agent audio
and an in-memory store: blind to an agent / a queue / a number, attended complete / cancel / refused."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator, Callable

import pytest

from appliance.acd.agent import AgentState
from appliance.acd.events import OfferMade
from appliance.acd.router import Acd
from appliance.api.feed import SiteFeed
from appliance.calls import CallCenter
from appliance.config import AcdConfig, BoxConfig, QueueConfig
from appliance.hub import Hub
from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, LineKind
from appliance.records import CallOutcome, CallRecord
from appliance.storage import codec
from appliance.transfer import Phase
from appliance.transfer_requests import ToAgent, ToNumber, ToQueue, TransferError, TransferNotice
from media.bridge import NullLeg
from media.frames import FRAME_BYTES

WAIT_S = 5.0
NAMES = {"alice": "Alice Martin", "bob": "Bob Okafor", "carol": "Carol Diaz"}


class FakeLeg:
    """Speaks one constant frame; remembers what it hears."""

    def __init__(self, fill: int) -> None:
        self.frame = bytes([fill, 0]) * (FRAME_BYTES // 2)
        self.heard: list[bytes] = []
        self._expect: tuple[bytes, asyncio.Event] | None = None

    def read_frame_nowait(self) -> bytes | None:
        return self.frame

    def write_frame(self, pcm: bytes) -> None:
        self.heard.append(pcm)
        if self._expect is not None and pcm == self._expect[0]:
            self._expect[1].set()

    async def hears(self, frame: bytes) -> None:
        """Return once the bridge writes ``frame`` to this leg (from now on)."""
        self._expect = (frame, asyncio.Event())
        async with asyncio.timeout(WAIT_S):
            await self._expect[1].wait()


class Caller:
    """An InboundCall on a fake line."""

    kind = LineKind.SIP

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.line_id = "sip"
        self.caller = CallerId("+441234567890", "Ann Customer")
        self.called = "support"
        self.audio = FakeLeg(0x11)
        self.ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self.hangups: list[HangupCause] = []

    async def progress(self) -> None:
        return None

    async def answer(self) -> None:
        return None

    async def hangup(self, cause: HangupCause) -> None:
        self.hangups.append(cause)
        if not self.ended.done():
            self.ended.set_result(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self.ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        return None

    def leaves(self) -> None:
        self.ended.set_result(HangupCause.CALLER_HUNG_UP)


class FarEnd:
    """An OutboundCall whose answer the test scripts."""

    kind = LineKind.SIP
    line_id = "trunk"

    def __init__(self, number: str) -> None:
        self.call_id = f"out-{number}"
        self.called = number
        self.audio = FakeLeg(0x44)
        self.result: asyncio.Future[DialFailure | None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self.hangups: list[HangupCause] = []

    async def wait_answered(self) -> None:
        failure = await asyncio.shield(self.result)
        if failure is not None:
            raise DialFailed(failure, "scripted")

    async def hangup(self, cause: HangupCause) -> None:
        self.hangups.append(cause)
        if not self.ended.done():
            self.ended.set_result(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self.ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        return None

    async def send_dtmf(self, digit: str) -> bool:
        return True


class Dialler:
    def __init__(self) -> None:
        self.calls: list[FarEnd] = []

    async def __call__(self, number: str) -> FarEnd:
        out = FarEnd(number)
        self.calls.append(out)
        return out


class Store:
    def __init__(self, root: Path) -> None:
        self.calls: dict[str, CallRecord] = {}
        self.root = root

    async def save_call(self, rec: CallRecord) -> str:
        self.calls[rec.call_id] = codec.doc_to_call(codec.call_to_doc(rec))  # through the stored layout
        return rec.call_id

    async def customer_by_phone(self, number: str) -> Any:
        return None

    async def upsert_customer(self, customer_id: str | None = None, *, name: str | None = None, phones: tuple[str, ...] = ()) -> Any:
        return SimpleNamespace(customer_id="cust-1", name=name)

    async def interactions_for_customer(self, customer_id: str, limit: int | None = None) -> list[Any]:
        return []

    def recordings_dir(self) -> Path:
        return self.root

    def recordings_allowed(self) -> bool:
        return True

    def recording_sink_factory(self) -> Any:
        from media.recorder import FileSink
        return FileSink


class AgentAudio:
    def __init__(self) -> None:
        self.legs = {"alice": FakeLeg(0x22), "bob": FakeLeg(0x33), "carol": FakeLeg(0x55)}

    def media_for(self, agent_id: str) -> FakeLeg | None:
        return self.legs.get(agent_id)

    async def wait_reconnected(self, agent_id: str, old: Any, timeout: float) -> None:
        return None


@dataclass
class Site:
    hub: Hub
    acd: Acd
    center: CallCenter
    store: Store
    audio: AgentAudio
    dialler: Dialler
    feed: SiteFeed
    events: list[Any]
    changed: asyncio.Condition
    tasks: list[asyncio.Task[None]]

    async def until(self, pred: Callable[[], bool], what: str = "condition") -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                async with self.changed:
                    await self.changed.wait_for(pred)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def state(self, agent_id: str) -> AgentState:
        return self.acd.snapshot(agent_id).state

    def available(self, *agents: str) -> None:
        for a in agents:
            self.acd.login(a)
            self.acd.set_available(a)

    async def arrive(self, call_id: str, call: Caller | None = None) -> Caller:
        call = call or Caller(call_id)
        self.tasks.append(asyncio.create_task(self.center.handle_inbound(call), name=f"test-call:{call_id}"))
        await self.until(lambda: any(c.call_id == call_id for c in self.center.live_calls()), f"{call_id} live")
        return call

    def offers(self, agent_id: str) -> list[OfferMade]:
        return [e for e in self.events if isinstance(e, OfferMade) and e.agent_id == agent_id]

    def notices(self, agent_id: str) -> list[TransferNotice]:
        return [e for e in self.events if isinstance(e, TransferNotice) and e.agent_id == agent_id]

    async def answered_by(self, call: Caller, agent_id: str) -> None:
        await self.until(lambda: any(o.call_id == call.call_id for o in self.offers(agent_id)), f"offer to {agent_id}")
        self.acd.accept(agent_id, call.call_id)
        await self.until(lambda: self.bridged(call) is self.audio.legs[agent_id], f"{agent_id} bridged")

    def bridged(self, call: Caller) -> Any:
        conv = self.center.conversation(call.call_id)
        return conv.bridge.agent if conv is not None else None

    def phase(self, call: Caller) -> Phase | None:
        conv = self.center.conversation(call.call_id)
        return conv.transfers.phase if conv is not None else None

    async def record(self, call_id: str, pred: Callable[[CallRecord], bool] = lambda r: True) -> CallRecord:
        await self.until(lambda: call_id in self.store.calls and pred(self.store.calls[call_id]), f"record {call_id}")
        return self.store.calls[call_id]

    def queue_stats(self, queue_id: str) -> tuple[int, int, int]:
        qcfg = next(q for q in self.center.cfg.queues if q.id == queue_id)
        v = self.feed.queue_view(qcfg)
        return v.offered_today, v.answered_today, v.abandoned_today


@pytest.fixture
async def site(tmp_path: Path):
    async with open_site(tmp_path) as s:
        yield s


@contextlib.asynccontextmanager
async def open_site(tmp_path: Path, **cfg_extra: Any) -> AsyncIterator[Site]:
    """The real CallCenter, ACD and feed with queues support (alice, bob) and sales (carol)."""
    hub = Hub()
    cfg = BoxConfig(
        data_dir=tmp_path,
        acd=AcdConfig(ring_timeout_s=5.0, wrapup_s=60.0, pause_on_missed_offer=True),
        queues=(QueueConfig("support", "Support", ringback_s=0.0), QueueConfig("sales", "Sales", ringback_s=0.0)),
        **cfg_extra,
    )
    acd = Acd(agents=[("alice", NAMES["alice"], ("support",)), ("bob", NAMES["bob"], ("support",)),
                      ("carol", NAMES["carol"], ("sales",))],
              queues=["support", "sales"], ring_timeout_s=cfg.acd.ring_timeout_s, wrapup_s=cfg.acd.wrapup_s,
              pause_on_missed_offer=True, publish=hub.topic("acd").publish)
    store, audio, dialler = Store(tmp_path / "rec"), AgentAudio(), Dialler()
    center = CallCenter(cfg, acd, store, hub.topic("calls"), audio, NAMES.__getitem__, dial_external=dialler)
    await center.prepare()
    feed = SiteFeed(SimpleNamespace(hub=hub, cfg=cfg, acd=acd, store=None, calls=center, agent_config=lambda a: None))
    await feed.start()
    events: list[Any] = []
    changed = asyncio.Condition()

    async def follow(name: str) -> None:
        async for ev in hub.topic(name).subscribe(maxsize=4096):
            async with changed:
                events.append(ev)
                changed.notify_all()

    followers = [asyncio.create_task(follow(n), name=f"test-follow:{n}") for n in ("acd", "calls")]
    s = Site(hub, acd, center, store, audio, dialler, feed, events, changed, [])

    orig_save = store.save_call

    async def save_and_notify(rec: CallRecord) -> str:
        out = await orig_save(rec)
        async with changed:
            changed.notify_all()
        return out

    store.save_call = save_and_notify  # type: ignore[method-assign]
    try:
        yield s
    finally:
        await center.shutdown(5.0)
        for t in followers:
            t.cancel()
        await asyncio.wait(followers)
        await feed.stop()
        acd.close()


async def alice_on_call(site: Site, call_id: str = "c1") -> Caller:
    site.available("alice")
    call = await site.arrive(call_id)
    await site.answered_by(call, "alice")
    return call


def on_hold(site: Site, call: Caller) -> bool:
    conv = site.center.conversation(call.call_id)
    return conv is not None and conv.bridge.on_hold and isinstance(conv.bridge.agent, NullLeg)


# --- blind ------------------------------------------------------------------------------------------
async def test_blind_to_agent_each_agent_gets_own_segment_and_wrapup(site: Site) -> None:
    call = await alice_on_call(site)
    site.available("bob")
    site.center.transfer("alice", "c1", ToAgent("bob"))

    await site.until(lambda: site.state("bob") is AgentState.RESERVED, "bob offered")
    assert site.state("alice") is AgentState.WRAP_UP  # her segment ended at once
    offer = site.offers("bob")[-1]
    assert (offer.kind, offer.from_agent, offer.from_agent_name, offer.call_id) == ("transfer", "alice", "Alice Martin", "c1-2")
    assert on_hold(site, call)
    seg1 = await site.record("c1")
    assert (seg1.segment, seg1.hangup_cause, seg1.transfer, seg1.transferred_to) == (1, "transferred", "blind", "bob")
    assert seg1.agent_id == "alice" and seg1.wait_s is not None and seg1.offered_at is not None
    site.acd.end_wrapup("alice", "escalated")
    assert (await site.record("c1", lambda r: r.disposition is not None)).disposition == "escalated"

    site.acd.accept("bob", "c1-2")
    await site.until(lambda: site.bridged(call) is site.audio.legs["bob"], "bob bridged")
    assert not site.center.conversation("c1").bridge.on_hold
    await call.audio.hears(site.audio.legs["bob"].frame)
    call.leaves()
    seg2 = await site.record("c1-2")
    assert (seg2.segment, seg2.parent_call_id, seg2.transferred_from, seg2.agent_id) == (2, "c1", "alice", "bob")
    assert seg2.hangup_cause == "caller hung up" and seg2.outcome is CallOutcome.ANSWERED and seg2.talk_s > 0
    assert seg2.wait_s is None and seg2.offered_at is None  # the queue wait counts once, on segment 1
    assert seg1.recording_path and seg2.recording_path == seg1.recording_path
    await site.until(lambda: site.state("bob") is AgentState.WRAP_UP, "bob wrap-up")
    site.acd.end_wrapup("bob", "resolved")
    assert (await site.record("c1-2", lambda r: r.disposition is not None)).disposition == "resolved"
    assert site.acd.snapshot("alice").calls_handled == 1 and site.acd.snapshot("bob").calls_handled == 1
    await site.until(lambda: site.queue_stats("support") == (1, 1, 0), "support counted once")


async def test_blind_transfer_not_answered_returns_ahead_of_new_calls(site: Site) -> None:
    site.acd.ring_timeout_s = 0.2
    call = await alice_on_call(site)
    site.available("bob")
    site.center.transfer("alice", "c1", ToAgent("bob"))
    await site.until(lambda: site.state("bob") is AgentState.RESERVED, "bob offered")
    await site.arrive("c2")  # a new call arrives while the transfer rings bob
    await site.until(lambda: [c.call_id for c in site.acd.waiting("support")] == ["c2"], "c2 queued")
    # bob lets it ring out: he is paused (missed offer) and the transferred call waits first in line
    await site.until(lambda: [c.call_id for c in site.acd.waiting("support")] == ["c1-2", "c2"], "c1 ahead of c2")
    assert site.state("bob") is AgentState.PAUSED and site.acd.snapshot("bob").pause_reason == "missed offer"
    assert on_hold(site, call) and site.phase(call) is Phase.TRANSFERRING
    site.acd.set_available("bob")
    await site.until(lambda: any(o.call_id == "c1-2" and o.kind == "call" for o in site.offers("bob")), "bob offered c1 again")
    site.acd.accept("bob", "c1-2")
    await site.until(lambda: site.bridged(call) is site.audio.legs["bob"], "bob bridged")
    assert [c.call_id for c in site.acd.waiting("support")] == ["c2"]
    call.leaves()
    seg2 = await site.record("c1-2")
    assert seg2.transferred_from == "alice" and seg2.offers == ("bob",) and seg2.enqueued_at is None


async def test_blind_to_other_queue_counts_there_as_offered(site: Site) -> None:
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToQueue("sales"))
    await site.until(lambda: [c.call_id for c in site.acd.waiting("sales")] == ["c1-2"], "queued in sales")
    assert site.state("alice") is AgentState.WRAP_UP and on_hold(site, call)
    seg1 = await site.record("c1")
    assert (seg1.transfer, seg1.transferred_to, seg1.hangup_cause) == ("blind", "sales", "transferred")
    site.available("carol")
    await site.until(lambda: any(o.call_id == "c1-2" for o in site.offers("carol")), "offer to carol")
    site.acd.accept("carol", "c1-2")
    await site.until(lambda: site.bridged(call) is site.audio.legs["carol"], "carol bridged")
    call.leaves()
    seg2 = await site.record("c1-2")
    assert (seg2.queue, seg2.agent_id, seg2.transferred_from) == ("sales", "carol", "alice")
    assert seg2.enqueued_at is not None and seg2.wait_s is not None and seg2.wait_s >= 0
    await site.until(lambda: site.queue_stats("sales") == (1, 1, 0), "sales counts the transferred call")
    assert site.queue_stats("support") == (1, 1, 0)


async def test_blind_to_number_bridges_far_end_and_alice_wraps_up(site: Site) -> None:
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToNumber("+447700900123"))
    await site.until(lambda: len(site.dialler.calls) == 1, "dialled")
    out = site.dialler.calls[0]
    assert on_hold(site, call) and site.state("alice") is AgentState.ON_CALL  # alice stays while it rings
    out.result.set_result(None)  # answered
    await site.until(lambda: site.bridged(call) is out.audio, "far end bridged")
    assert site.state("alice") is AgentState.WRAP_UP
    seg1 = await site.record("c1")
    assert (seg1.transfer, seg1.transferred_to) == ("blind", "+447700900123")
    await out.hangup(HangupCause.FAR_END_HUNG_UP)  # the far end hangs up: the caller is hung up too
    seg2 = await site.record("c1-2")
    assert seg2.agent_id is None and seg2.to_number == "+447700900123" and seg2.transferred_from == "alice"
    assert seg2.hangup_cause == "far end hung up" and call.hangups == [HangupCause.FAR_END_HUNG_UP]


async def test_blind_to_number_that_is_busy_gives_the_caller_back(site: Site) -> None:
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToNumber("+447700900999"))
    await site.until(lambda: len(site.dialler.calls) == 1, "dialled")
    site.dialler.calls[0].result.set_result(DialFailure.BUSY)
    await site.until(lambda: any(n.state == "failed" for n in site.notices("alice")), "alice told")
    assert site.bridged(call) is site.audio.legs["alice"] and not site.center.conversation("c1").bridge.on_hold
    assert "busy" in site.notices("alice")[-1].message
    assert site.state("alice") is AgentState.ON_CALL and "c1" not in site.store.calls


async def test_refused_requests_say_why(site: Site) -> None:
    await alice_on_call(site)
    with pytest.raises(TransferError, match="not available"):
        site.center.transfer("alice", "c1", ToAgent("bob"))  # bob is logged out
    with pytest.raises(TransferError, match="no call"):
        site.center.transfer("bob", None, ToAgent("alice"))
    with pytest.raises(TransferError, match="yourself"):
        site.center.consult("alice", "c1", "alice")
    with pytest.raises(TransferError, match="answered the consult"):
        site.center.complete_transfer("alice", "c1")
    with pytest.raises(TransferError, match="no queue"):
        site.center.transfer("alice", "c1", ToQueue("nope"))


# --- attended ---------------------------------------------------------------------------------------
async def consulting(site: Site) -> Caller:
    call = await alice_on_call(site)
    site.available("bob")
    site.center.consult("alice", "c1", "bob")
    await site.until(lambda: any(o.kind == "consult" for o in site.offers("bob")), "consult offer")
    assert on_hold(site, call) and site.state("alice") is AgentState.ON_CALL
    site.acd.accept("bob", "c1-2")
    await site.until(lambda: site.phase(call) is Phase.CONSULTING, "consulting")
    return call


async def test_attended_complete_moves_caller_to_bob(site: Site) -> None:
    call = await consulting(site)
    consult = site.center.conversation("c1").transfers.consult
    assert consult is not None and consult.customer is site.audio.legs["alice"] and consult.agent is site.audio.legs["bob"]
    assert site.acd.snapshot("bob").calls_handled == 0  # a consult alone is not a handled call
    site.center.complete_transfer("alice", "c1")
    await site.until(lambda: site.bridged(call) is site.audio.legs["bob"], "bob has the caller")
    conv = site.center.conversation("c1")
    assert conv.transfers.consult is None and not conv.bridge.on_hold and conv.owner == "bob"
    assert site.state("alice") is AgentState.WRAP_UP and site.state("bob") is AgentState.ON_CALL
    assert site.acd.snapshot("bob").calls_handled == 1
    seg1 = await site.record("c1")
    assert (seg1.transfer, seg1.transferred_to, seg1.hangup_cause) == ("attended", "bob", "transferred")
    assert site.center.agent_hangup("bob")
    seg2 = await site.record("c1-2")
    assert (seg2.transferred_from, seg2.hangup_cause, seg2.segment) == ("alice", "agent hung up", 2)
    assert call.hangups == [HangupCause.AGENT_HUNG_UP]
    await site.until(lambda: site.state("bob") is AgentState.WRAP_UP, "bob wraps up")
    site.acd.end_wrapup("alice", "escalated")
    site.acd.end_wrapup("bob", "resolved")
    assert (await site.record("c1", lambda r: r.disposition is not None)).disposition == "escalated"
    assert (await site.record("c1-2", lambda r: r.disposition is not None)).disposition == "resolved"
    await site.until(lambda: site.queue_stats("support") == (1, 1, 0), "counted once")


@pytest.mark.parametrize("how", ["cancel", "bob hangs up"])
async def test_attended_cancel_gives_alice_the_caller_back(site: Site, how: str) -> None:
    call = await consulting(site)
    if how == "cancel":
        site.center.cancel_consult("alice", "c1")
    else:
        assert site.center.agent_hangup("bob")
    await site.until(lambda: site.bridged(call) is site.audio.legs["alice"], "alice back")
    assert site.center.conversation("c1").transfers.consult is None and not site.center.conversation("c1").bridge.on_hold
    await site.until(lambda: site.state("bob") is AgentState.AVAILABLE, "bob free, no wrap-up")
    assert site.acd.snapshot("bob").calls_handled == 0
    call.leaves()
    seg1 = await site.record("c1")
    assert seg1.transfer == "" and seg1.hangup_cause == "caller hung up" and seg1.agent_id == "alice"
    assert "c1-2" not in site.store.calls


async def test_attended_refused_keeps_caller_on_hold_until_retrieved(site: Site) -> None:
    call = await alice_on_call(site)
    site.available("bob")
    site.center.consult("alice", "c1", "bob")
    await site.until(lambda: site.state("bob") is AgentState.RESERVED, "consult rings bob")
    site.acd.reject("bob", "c1-2")
    await site.until(lambda: site.phase(call) is Phase.HELD, "held")
    assert on_hold(site, call) and "did not take" in site.notices("alice")[-1].message
    assert site.state("bob") is AgentState.AVAILABLE
    site.center.retrieve("alice", "c1")
    await site.until(lambda: site.bridged(call) is site.audio.legs["alice"], "retrieved")
    assert site.phase(call) is Phase.TALKING and not site.center.conversation("c1").bridge.on_hold


async def test_caller_leaving_during_consult_ends_both_sides(site: Site) -> None:
    call = await consulting(site)
    call.leaves()
    seg1 = await site.record("c1")
    assert seg1.hangup_cause == "caller hung up" and seg1.transfer == ""
    await site.until(lambda: site.state("bob") is AgentState.AVAILABLE and site.state("alice") is AgentState.WRAP_UP,
                     "alice wraps up, bob is free")
    assert any(n.state == "cancelled" for n in site.notices("bob"))


def test_old_call_documents_load_without_transfer_fields() -> None:
    rec = CallRecord("x", "sip", "sip", "inbound", "+44", None, "support", "support", CallOutcome.ANSWERED,
                     "caller hung up", 1.0)
    doc = codec.call_to_doc(rec)
    for key in ("segment", "transfer", "transferred_to", "transferred_from", "parent_call_id"):
        doc.pop(key)
    old = codec.doc_to_call(doc)
    assert (old.segment, old.transfer, old.transferred_to, old.parent_call_id) == (1, "", None, None)


# --- the ACD's part: directed offers and priority ----------------------------------------------------
async def test_directed_offer_rings_only_its_target_and_reports_why_it_ended(site: Site) -> None:
    from appliance.acd.router import QueuedCall

    site.available("alice", "bob")
    qc = QueuedCall("d1", "support", CallerId("+44"), "sip", enqueued_at=0.0, target="bob", kind="consult", from_agent="alice")
    site.acd.offer_directed(qc)
    assert site.state("bob") is AgentState.RESERVED and site.state("alice") is AgentState.AVAILABLE
    assert site.acd.waiting("support") == []  # never in a queue
    site.acd.reject("bob", "d1")
    assert qc.answered.cancelled() and qc.end_reason == "rejected"
    assert site.state("bob") is AgentState.AVAILABLE


async def test_consult_counts_only_when_taken_over(site: Site) -> None:
    from appliance.acd.router import QueuedCall

    site.available("bob")
    for n, finish in ((1, "ended"), (2, "taken")):
        qc = QueuedCall(f"d{n}", "support", CallerId("+44"), "sip", enqueued_at=0.0, target="bob", kind="consult")
        site.acd.offer_directed(qc)
        site.acd.accept("bob", f"d{n}")
        assert site.acd.snapshot("bob").calls_handled == 0
        if finish == "ended":
            site.acd.consult_ended("bob", "d1")
            assert site.state("bob") is AgentState.AVAILABLE
        else:
            site.acd.take_over("bob", "d2")
            assert site.acd.snapshot("bob").calls_handled == 1 and site.state("bob") is AgentState.ON_CALL


async def test_priority_calls_wait_ahead_of_new_ones_fifo_among_themselves(site: Site) -> None:
    from appliance.acd.router import QueuedCall

    def queued(cid: str, priority: int) -> QueuedCall:
        return QueuedCall(cid, "support", CallerId("+44"), "sip", enqueued_at=0.0, priority=priority)

    for cid, prio in (("new1", 0), ("moved1", 1), ("new2", 0), ("moved2", 1)):
        site.acd.enqueue(queued(cid, prio))
    assert [c.call_id for c in site.acd.waiting("support")] == ["moved1", "moved2", "new1", "new2"]
    for cid in ("new1", "moved1", "new2", "moved2"):
        site.acd.withdraw(cid)


async def test_caller_leaving_while_transferred_to_a_queue_is_abandoned_there(site: Site) -> None:
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToQueue("sales"))  # nobody is logged in to sales
    await site.until(lambda: [c.call_id for c in site.acd.waiting("sales")] == ["c1-2"], "queued in sales")
    call.leaves()
    lost = await site.record("c1-2")
    assert (lost.outcome, lost.queue, lost.transferred_from, lost.agent_id) == (CallOutcome.ABANDONED, "sales", "alice", None)
    assert lost.enqueued_at is not None and lost.wait_s is not None
    assert site.acd.waiting("sales") == []
    await site.until(lambda: site.queue_stats("sales") == (1, 0, 1), "abandoned in sales")
    assert site.queue_stats("support") == (1, 1, 0)


def test_console_documents_for_transfers() -> None:
    from appliance.web.commands import transfer_op as _transfer_op
    from appliance.web.server import _event_doc

    notice = TransferNotice("c1", "alice", "consulting", "from", "Bob Okafor", "+44", "talking to Bob Okafor")
    assert _event_doc("alice", notice) == {"type": "transfer", "call_id": "c1", "state": "consulting", "role": "from",
                                           "peer": "Bob Okafor", "caller": "+44", "message": "talking to Bob Okafor"}
    assert _event_doc("bob", notice) is None
    offer = OfferMade("c1-2", "bob", "support", "+44", None, "sip", 1.0, 2.0, 15.0, kind="consult",
                      from_agent="alice", from_agent_name="Alice Martin")
    doc = _event_doc("bob", offer)
    assert (doc["kind"], doc["from_agent"], doc["from_agent_name"]) == ("consult", "alice", "Alice Martin")

    asked: list[tuple] = []

    class Ops:
        def __getattr__(self, name: str):  # noqa: ANN204
            return lambda *args: asked.append((name, *args))

    _transfer_op(Ops(), "alice", "transfer", {"call_id": "c1", "to": {"number": " +447700900123 "}})
    _transfer_op(Ops(), "alice", "consult", {"call_id": "c1", "agent": "bob"})
    _transfer_op(Ops(), "alice", "complete_transfer", {"call_id": "c1"})
    assert asked == [("transfer", "alice", "c1", ToNumber("+447700900123")), ("consult", "alice", "c1", "bob"),
                     ("complete_transfer", "alice", "c1")]
    with pytest.raises(TransferError, match="say where"):
        _transfer_op(Ops(), "alice", "transfer", {"call_id": "c1", "to": {"agent": ""}})


async def test_retrieve_while_the_number_rings_cancels_the_dial(site: Site) -> None:
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToNumber("+447700900555"))
    await site.until(lambda: len(site.dialler.calls) == 1 and site.phase(call) is Phase.DIALING, "dialling")
    site.center.retrieve("alice", "c1")
    await site.until(lambda: site.bridged(call) is site.audio.legs["alice"], "alice back")
    assert site.dialler.calls[0].hangups == [HangupCause.CANCELLED]
    assert site.phase(call) is Phase.TALKING and site.state("alice") is AgentState.ON_CALL


async def test_number_that_never_answers_times_out(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import appliance.transfer

    monkeypatch.setattr(appliance.transfer, "EXTERNAL_ANSWER_TIMEOUT_S", 0.2)
    call = await alice_on_call(site)
    site.center.transfer("alice", "c1", ToNumber("+447700900556"))
    await site.until(lambda: any(n.state == "failed" for n in site.notices("alice")), "alice told")
    assert "no answer" in site.notices("alice")[-1].message
    assert site.bridged(call) is site.audio.legs["alice"]
    await site.until(lambda: site.dialler.calls[0].hangups == [HangupCause.TIMEOUT], "far end cancelled")


async def test_statistics_seeded_from_segment_records_count_each_queue_visit_once(tmp_path: Path) -> None:
    import time

    now = time.time()
    base = CallRecord("c1", "sip", "sip", "inbound", "+44", None, "support", "support", CallOutcome.ANSWERED,
                      "transferred", now, enqueued_at=now, answered_at=now + 2, parent_call_id="c1")
    records = [
        base,  # segment 1 in support: offered and answered once
        CallRecord("c1-2", "sip", "sip", "inbound", "+44", None, "support", "support", CallOutcome.ANSWERED,
                   "transferred", now, answered_at=now + 9, segment=2, parent_call_id="c1"),  # same queue: not again
        CallRecord("c1-3", "sip", "sip", "inbound", "+44", None, "support", "sales", CallOutcome.ANSWERED,
                   "caller hung up", now, enqueued_at=now + 20, answered_at=now + 25, segment=3, parent_call_id="c1"),
    ]
    hub = Hub()
    cfg = BoxConfig(queues=(QueueConfig("support", "Support"), QueueConfig("sales", "Sales")))
    store = SimpleNamespace(recent_calls=lambda limit: asyncio.sleep(0, records), alarms=lambda: [])
    feed = SiteFeed(SimpleNamespace(hub=hub, cfg=cfg, acd=None, store=store, calls=None))
    await feed.start()
    try:
        views = {q.id: feed.queue_view(q) for q in cfg.queues}
        assert (views["support"].offered_today, views["support"].answered_today) == (1, 1)
        assert (views["sales"].offered_today, views["sales"].answered_today) == (1, 1)
    finally:
        await feed.stop()


async def test_cancelled_call_task_still_stops_its_bridges(site: Site) -> None:
    call = await consulting(site)
    conv = site.center.conversation("c1")
    consult = conv.transfers.consult
    task = site.tasks[0]
    task.cancel()
    async with asyncio.timeout(WAIT_S):
        await asyncio.wait({task})
    assert task.cancelled()
    assert not conv.bridge.running and consult is not None and not consult.running
    assert call.hangups == [HangupCause.SHUTDOWN]
