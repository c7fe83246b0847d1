"""Random operation sequences against a plain dict model, across restarts and small shards.

Exercises what unit tests miss: span relocation after rewrites and removals, cold-shard
reads, sidecars written at fill/eviction/close or rebuilt at start, and the secondary indexes.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from appliance.storage import Store


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_operations_match_a_model(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    model: dict[tuple[str, str], dict] = {}
    phones: dict[str, str] = {}  # phone -> customer id
    msg_ids: dict[tuple[str, str], str] = {}
    data = tmp_path / "d"
    for round_no in range(4):
        s = await Store.open(data, branch="m")
        s.engine.shards.cap = 7
        s.engine.shards._open_limit = 2
        try:
            for _ in range(120):
                r = rnd.random()
                kind = rnd.choice(["sms", "chat", "agent_event"])
                key = f"k{rnd.randrange(40)}"
                if r < 0.55:
                    doc = {"n": rnd.randrange(1000), "pad": "x" * rnd.randrange(200), "at": 1.0e9 + rnd.randrange(10**8)}
                    mid = await s.put(kind, doc, key=key)
                    assert msg_ids.setdefault((kind, key), mid) == mid  # minted once per record
                    model[(kind, key)] = doc
                elif r < 0.75:
                    assert await s.delete(kind, key) == ((kind, key) in model)
                    model.pop((kind, key), None)
                    msg_ids.pop((kind, key), None)
                elif r < 0.9:
                    phone = f"+49{rnd.randrange(15)}"
                    c = await s.upsert_customer(name="x", phones=(phone,))
                    phones[phone] = c.customer_id
                else:
                    got = await s.get(kind, key)
                    want = model.get((kind, key))
                    assert (got is None) == (want is None)
                    if want is not None:
                        assert {k: v for k, v in got.items() if not k.startswith("_")} == want
            for (kind, key), want in model.items():
                got = await s.get(kind, key)
                assert got is not None, (round_no, kind, key)
                assert {k: v for k, v in got.items() if not k.startswith("_")} == want
                assert got["_msg_id"] == msg_ids[(kind, key)]
            for phone, cid in phones.items():
                assert (await s.customer_by_phone(phone)).customer_id == cid
            assert s.engine.index.count() - s.engine.index.count("customer") == len(model)
            assert s.alarms() == []
        finally:
            await s.close()


async def test_recent_conversations_newest_activity_first(tmp_path) -> None:
    from appliance.storage import Channel, Store

    store = await Store.open(tmp_path)
    try:
        await store.add_message(Channel.SMS, "in", "+441632960001", "first", at=100.0)
        await store.add_message(Channel.SMS, "in", "+441632960002", "second", at=200.0)
        await store.add_message(Channel.SMS, "in", "+441632960001", "again", at=300.0)
        convs = await store.recent_conversations(10)
        assert [c.number for c in convs] == ["+441632960001", "+441632960002"]
        assert [m.body for m in await store.messages(convs[0])] == ["first", "again"]
        assert len(await store.recent_conversations(1)) == 1
    finally:
        await store.close()
