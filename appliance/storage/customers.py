"""Customers, conversations and the customer timeline, as operations on the engine (writer thread)."""
from __future__ import annotations

from typing import Any

from appliance.storage import codec
from appliance.storage.engine import Engine
from appliance.storage.ids import new_ulid
from appliance.storage.shards import period_of
from appliance.storage.models import (
    Channel,
    Conversation,
    ConversationId,
    ConversationState,
    Customer,
    CustomerId,
    Interaction,
    Message,
)


def customer_by_term(engine: Engine, term: str) -> Customer | None:
    hit = engine.index.term(term)
    if hit is None:
        return None
    doc = engine.get(*hit)
    return None if doc is None else codec.doc_to_customer(doc)


def upsert_customer(
    engine: Engine,
    now: float,
    customer_id: str | None,
    name: str | None,
    phones: tuple[str, ...],
    emails: tuple[str, ...],
    notes: str | None,
) -> Customer:
    """Create, or update the given fields of, a customer. A number or address already owned
    by another customer moves to this one (the newest statement wins)."""
    phones = tuple(dict.fromkeys(codec.normalise_number(p) for p in phones if p.strip()))
    emails = tuple(dict.fromkeys(codec.normalise_email(e) for e in emails if e.strip()))
    old = engine.get("customer", customer_id) if customer_id else None
    if old is not None:
        cur = codec.doc_to_customer(old)
        cust = Customer(
            customer_id=cur.customer_id,
            name=cur.name if name is None else name,
            phones=tuple(dict.fromkeys(cur.phones + phones)),
            emails=tuple(dict.fromkeys(cur.emails + emails)),
            created_at=cur.created_at,
            updated_at=now,
            notes=cur.notes if notes is None else notes,
        )
    else:
        cust = Customer(CustomerId(customer_id or new_ulid(now)), name, phones, emails, now, now, notes or "")
    for term in [f"tel:{p}" for p in phones] + [f"mail:{e}" for e in emails]:
        hit = engine.index.term(term)
        if hit is not None and hit[1] != cust.customer_id:
            _release(engine, now, hit[1], term)
    engine.upsert("customer", cust.customer_id, codec.customer_to_doc(cust), now)
    return cust


def _release(engine: Engine, now: float, other_id: str, term: str) -> None:
    doc = engine.get("customer", other_id)
    if doc is None:
        return
    other = codec.doc_to_customer(doc)
    kind, value = term.split(":", 1)
    phones = tuple(p for p in other.phones if not (kind == "tel" and p == value))
    emails = tuple(e for e in other.emails if not (kind == "mail" and e == value))
    moved = Customer(other.customer_id, other.name, phones, emails, other.created_at, now, other.notes)
    engine.upsert("customer", other.customer_id, codec.customer_to_doc(moved), now)


def interactions_for(engine: Engine, customer_id: str, limit: int | None) -> list[Interaction]:
    """Newest first."""
    out = []
    for kind, key, _at in reversed(engine.index.customer_refs(customer_id)):
        doc = engine.get(kind, key)
        if doc is not None and doc.get("customer_id") == customer_id:
            if kind == "call" and int(doc.get("segment") or 1) > 1:
                continue  # a transfer's later part: the customer's call is shown once, by its first part
            out.append(codec.to_interaction(kind, doc))
            if limit is not None and len(out) >= limit:
                break
    return out


def _conv_number(channel: Channel, number: str) -> str:
    return codec.normalise_number(number) if channel is Channel.SMS else number  # chat: the web session handle


def open_conversation(engine: Engine, number: str, channel: Channel | None) -> Conversation | None:
    found = []
    for ch in [channel] if channel else list(Channel):
        hit = engine.index.term(f"open:{ch.value}:{_conv_number(ch, number)}")
        doc = engine.get(*hit) if hit else None
        if doc is not None:
            found.append(codec.doc_to_conversation(doc))
    return max(found, key=lambda c: c.last_at) if found else None


def add_message(
    engine: Engine, now: float, channel: Channel, direction: str, number: str, body: str, at: float | None
) -> Message:
    """Store an SMS or chat message in the open conversation for ``number`` (opened if none),
    linked to the customer who owns that number."""
    at = now if at is None else at
    number = _conv_number(channel, number)
    conv = open_conversation(engine, number, channel)
    customer = customer_by_term(engine, f"tel:{codec.normalise_number(number)}") if channel is Channel.SMS else None
    customer_id = customer.customer_id if customer else (conv.customer_id if conv else None)
    if conv is None:
        conv = Conversation(ConversationId(new_ulid(now)), channel, number, customer_id, ConversationState.OPEN, at, at)
    else:
        conv = Conversation(conv.conversation_id, channel, number, customer_id, conv.state, conv.opened_at, max(at, conv.last_at))
    engine.upsert("conversation", conv.conversation_id, codec.conversation_to_doc(conv), now)
    key = new_ulid(now)
    msg = Message(key, "", conv.conversation_id, channel, direction, number, body, at, customer_id)
    msg_id = engine.upsert(channel.value, key, codec.message_to_doc(msg), now)
    return Message(key, msg_id, conv.conversation_id, channel, direction, number, body, at, customer_id)


def close_conversation(engine: Engine, now: float, conversation_id: str) -> Conversation | None:
    doc = engine.get("conversation", conversation_id)
    if doc is None:
        return None
    c = codec.doc_to_conversation(doc)
    closed = Conversation(c.conversation_id, c.channel, c.number, c.customer_id, ConversationState.CLOSED, c.opened_at, c.last_at, now)
    engine.upsert("conversation", c.conversation_id, codec.conversation_to_doc(closed), now)
    return closed


RECENT_SCAN_SHARDS = 24  # the inbox looks at the newest ~2,400 conversations, not at all history


def recent_conversations(engine: Engine, limit: int) -> list[Conversation]:
    found: list[Conversation] = []
    shards_seen: set[int] = set()
    for no, doc in engine.docs("conversation", newest_first=True):
        if no not in shards_seen:
            if len(shards_seen) >= RECENT_SCAN_SHARDS:
                break
            shards_seen.add(no)
        found.append(codec.doc_to_conversation(doc))
    found.sort(key=lambda c: c.last_at, reverse=True)
    return found[:limit]


def messages_of(engine: Engine, conv: Conversation) -> list[Message]:
    """Scans only the shards of the months the conversation spans."""
    periods = (period_of(conv.opened_at), period_of(conv.last_at))
    docs = engine.docs(conv.channel.value, periods=periods)
    out = [codec.doc_to_message(d) for _, d in docs if d.get("conversation_id") == conv.conversation_id]
    return sorted(out, key=lambda m: m.at)


def body_without_store_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
