"""Customers, timeline and conversations: hot-path lookups through the in-memory index."""
from __future__ import annotations

from pathlib import Path

from appliance.records import CallOutcome
from appliance.storage import Channel, ConversationState, Store
from tests.storage.conftest import make_call


async def test_customer_lookup_by_phone_and_email_normalised(store: Store) -> None:
    c = await store.upsert_customer(name="Ann", phones=("+49 (30) 123-45",), emails=(" Ann@Example.ORG",))
    assert c.phones == ("+493012345",) and c.emails == ("ann@example.org",)
    assert await store.customer_by_phone("0049 30 12345") == c
    assert await store.customer_by_email("ann@example.org") == c
    assert await store.customer_by_phone("+4930999") is None


async def test_update_adds_fields_and_moves_a_number_between_customers(store: Store) -> None:
    a = await store.upsert_customer(name="Ann", phones=("+111",))
    b = await store.upsert_customer(name="Bob", phones=("+222",))
    a2 = await store.upsert_customer(a.customer_id, emails=("a@x.org",), notes="prefers mornings")
    assert a2.name == "Ann" and a2.emails == ("a@x.org",) and a2.notes == "prefers mornings"
    b2 = await store.upsert_customer(b.customer_id, phones=("+111",))  # Ann's old number now belongs to Bob
    assert (await store.customer_by_phone("+111")).customer_id == b.customer_id
    assert (await store.get_customer(a.customer_id)).phones == ()
    assert b2.phones == ("+222", "+111")


async def test_interactions_for_customer_newest_first(store: Store) -> None:
    c = await store.upsert_customer(name="Ann", phones=("+4930123",))
    await store.save_call(make_call("c1", at=1000.0, customer_id=c.customer_id))
    await store.save_call(make_call("c2", at=3000.0, customer_id=c.customer_id))
    await store.save_call(make_call("other", at=2000.0, customer_id="someone-else"))
    sms = await store.add_message(Channel.SMS, "in", "+49 30 123", "where is my order?", at=2000.0)
    got = await store.interactions_for_customer(c.customer_id)
    assert [(i.kind, i.key) for i in got] == [("call", "c2"), ("sms", sms.key), ("call", "c1")]
    assert got[1].summary == "where is my order?" and got[0].msg_id.startswith("br1:call:")
    assert len(await store.interactions_for_customer(c.customer_id, limit=1)) == 1


async def test_relinking_a_call_moves_it_between_timelines(store: Store) -> None:
    await store.save_call(make_call("c1", customer_id="A"))
    await store.save_call(make_call("c1", customer_id="B"))
    assert await store.interactions_for_customer("A") == []
    assert [i.key for i in await store.interactions_for_customer("B")] == ["c1"]


async def test_open_conversation_per_number_and_close(store: Store) -> None:
    m1 = await store.add_message(Channel.SMS, "in", "+4930 555", "hi")
    m2 = await store.add_message(Channel.SMS, "out", "+4930555", "hello, how can we help?")
    assert m1.conversation_id == m2.conversation_id
    conv = await store.open_conversation("+49 30 555")
    assert conv is not None and conv.state is ConversationState.OPEN and conv.number == "+4930555"
    assert [m.body for m in await store.messages(conv)] == ["hi", "hello, how can we help?"]
    closed = await store.close_conversation(conv.conversation_id)
    assert closed.state is ConversationState.CLOSED
    assert await store.open_conversation("+4930555") is None
    m3 = await store.add_message(Channel.SMS, "in", "+4930555", "me again")
    assert m3.conversation_id != conv.conversation_id
    chat = await store.add_message(Channel.CHAT, "in", "web-abc", "chat hello")
    assert (await store.open_conversation("web-abc", Channel.CHAT)).conversation_id == chat.conversation_id


async def test_indexes_survive_restart(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    c = await s.upsert_customer(name="Ann", phones=("+111",), emails=("a@x.org",))
    await s.save_call(make_call("c1", customer_id=c.customer_id))
    m = await s.add_message(Channel.SMS, "in", "+111", "hi")
    await s.close()
    s = await Store.open(tmp_path / "d")
    try:
        assert await s.customer_by_phone("+111") == c
        assert await s.customer_by_email("A@X.org") == c
        assert {i.key for i in await s.interactions_for_customer(c.customer_id)} == {"c1", m.key}
        assert (await s.open_conversation("+111")).conversation_id == m.conversation_id
    finally:
        await s.close()


async def test_a_customers_history_says_what_happened_and_shows_a_transferred_call_once(store: Store) -> None:
    from dataclasses import replace as _replace

    c = await store.upsert_customer(name="Ann", phones=("+4930123",))
    first = _replace(make_call("t1", at=1000.0, customer_id=c.customer_id), agent_id="alice", agent_name="Alice Martin",
                     talk_s=65.2, transfer="blind", transferred_to="bob", parent_call_id="t1")
    second = _replace(make_call("t1-2", at=1000.0, customer_id=c.customer_id), segment=2, parent_call_id="t1",
                      agent_id="bob", agent_name="Bob Okafor", disposition="resolved", talk_s=30.0)
    queued = _replace(make_call("q1", at=2000.0, customer_id=c.customer_id, outcome=CallOutcome.ABANDONED), wait_s=45.0)
    nobody = make_call("n1", at=3000.0, customer_id=c.customer_id, outcome=CallOutcome.NO_AGENT)
    busy = _replace(make_call("o1", at=4000.0, customer_id=c.customer_id, outcome=CallOutcome.FAILED),
                    direction="outbound", hangup_cause="busy")
    for rec in (first, second, queued, nobody, busy):
        await store.save_call(rec)
    got = await store.interactions_for_customer(c.customer_id)
    assert [(i.key, i.summary) for i in got] == [
        ("o1", "outbound: busy"),
        ("n1", "not answered: no agent was free"),
        ("q1", "abandoned: hung up after 0:45 in the queue"),
        ("t1", "answered by Alice Martin, 1:05, transferred to bob"),
    ]
