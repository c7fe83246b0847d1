"""The one place that knows document layouts: records and models <-> TinyDB dicts.

Every stored document carries these store fields besides its own:
``_key`` (primary key in its kind), ``_msg_id`` (minted once), ``_sync`` (outbox state),
``_at`` (epoch seconds that chose its shard period) and ``_rev`` (bumped on each update).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from appliance.records import CallOutcome, CallRecord
from appliance.storage.models import (
    Channel,
    Conversation,
    ConversationId,
    ConversationState,
    Customer,
    CustomerId,
    Interaction,
    Message,
    SyncInfo,
    SyncState,
)

INTERACTION_KINDS = frozenset({"call", "sms", "chat"})
_CALL_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord))
_NOT_DIGITS = re.compile(r"[^\d]")


def normalise_number(number: str) -> str:
    """'+49 (30) 123-45' -> '+493012345'; '0049...' -> '+49...'. Matching is exact on the result."""
    n = number.strip()
    plus = n.startswith("+") or n.startswith("00")
    digits = _NOT_DIGITS.sub("", n)
    if n.startswith("00"):
        digits = digits[2:]
    return ("+" if plus else "") + digits


def normalise_email(email: str) -> str:
    return email.strip().lower()


# ---- calls ----

def call_to_doc(rec: CallRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(rec, name) for name in _CALL_FIELDS}
    doc["outcome"] = rec.outcome.value
    doc["offers"] = list(rec.offers)
    doc["tags"] = list(rec.tags)
    doc["ivr"] = list(rec.ivr)
    return doc


def doc_to_call(doc: dict[str, Any]) -> CallRecord:
    values = {name: doc[name] for name in _CALL_FIELDS if name in doc}
    values["outcome"] = CallOutcome(doc["outcome"])
    values["offers"] = tuple(doc.get("offers", ()))
    values["tags"] = tuple(doc.get("tags", ()))
    values["ivr"] = tuple(doc.get("ivr", ()))
    return CallRecord(**values)


# ---- customers ----

def customer_to_doc(c: Customer) -> dict[str, Any]:
    return {
        "customer_id": c.customer_id,
        "name": c.name,
        "phones": list(c.phones),
        "emails": list(c.emails),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "notes": c.notes,
    }


def doc_to_customer(doc: dict[str, Any]) -> Customer:
    return Customer(
        customer_id=CustomerId(doc["customer_id"]),
        name=doc.get("name"),
        phones=tuple(doc.get("phones", ())),
        emails=tuple(doc.get("emails", ())),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        notes=doc.get("notes", ""),
    )


# ---- conversations and messages ----

def conversation_to_doc(c: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": c.conversation_id,
        "channel": c.channel.value,
        "number": c.number,
        "customer_id": c.customer_id,
        "state": c.state.value,
        "opened_at": c.opened_at,
        "last_at": c.last_at,
        "closed_at": c.closed_at,
    }


def doc_to_conversation(doc: dict[str, Any]) -> Conversation:
    return Conversation(
        conversation_id=ConversationId(doc["conversation_id"]),
        channel=Channel(doc["channel"]),
        number=doc["number"],
        customer_id=doc.get("customer_id"),
        state=ConversationState(doc["state"]),
        opened_at=doc["opened_at"],
        last_at=doc["last_at"],
        closed_at=doc.get("closed_at"),
    )


def message_to_doc(m: Message) -> dict[str, Any]:
    return {
        "conversation_id": m.conversation_id,
        "channel": m.channel.value,
        "direction": m.direction,
        "number": m.number,
        "body": m.body,
        "at": m.at,
        "customer_id": m.customer_id,
    }


def doc_to_message(doc: dict[str, Any]) -> Message:
    return Message(
        key=doc["_key"],
        msg_id=doc["_msg_id"],
        conversation_id=ConversationId(doc["conversation_id"]),
        channel=Channel(doc["channel"]),
        direction=doc["direction"],
        number=doc["number"],
        body=doc["body"],
        at=doc["at"],
        customer_id=doc.get("customer_id"),
    )


# ---- store fields ----

def sync_to_doc(s: SyncInfo) -> dict[str, Any]:
    return {"state": s.state.value, "attempts": s.attempts, "next_at": s.next_at}


def doc_to_sync(doc: dict[str, Any]) -> SyncInfo:
    s = doc["_sync"]
    return SyncInfo(SyncState(s["state"]), s.get("attempts", 0), s.get("next_at", 0.0))


def doc_time(kind: str, doc: dict[str, Any], now: float) -> float:
    """The instant that chooses a document's shard period."""
    for name in ("arrived_at", "at", "opened_at", "created_at"):
        value = doc.get(name)
        if isinstance(value, (int, float)):
            return float(value)
    return now


def to_interaction(kind: str, doc: dict[str, Any]) -> Interaction:
    if kind == "call":
        number = doc.get("to_number") if doc.get("direction") == "outbound" else doc.get("from_number")
        summary = call_summary(doc)
    else:
        number, summary = doc.get("number"), str(doc.get("body", ""))[:80]
    return Interaction(kind, doc["_key"], doc["_msg_id"], doc.get("customer_id"), doc["_at"], number, summary)


def call_summary(doc: dict[str, Any]) -> str:
    """One line an agent reads in a customer's history: "answered by Alice Martin, 3:05, resolved",
    "outbound: busy", "hung up after 0:45 in the queue", "no agent was free"."""
    outcome, outbound = str(doc.get("outcome", "")), doc.get("direction") == "outbound"
    if outcome == CallOutcome.ANSWERED.value:
        who = doc.get("agent_name") or doc.get("agent_id")
        parts = [f"answered by {who}" if who else "answered"]
        if doc.get("talk_s"):
            parts.append(_minutes(float(doc["talk_s"])))
        if doc.get("transferred_to"):
            parts.append(f"transferred to {doc['transferred_to']}")
        if doc.get("disposition"):
            parts.append(str(doc["disposition"]))
        text = ", ".join(parts)
    elif outcome == CallOutcome.ABANDONED.value and not outbound:
        wait = doc.get("wait_s")
        text = f"abandoned: hung up after {_minutes(float(wait))} in the queue" if wait else "abandoned: hung up"
    elif outcome == CallOutcome.NO_AGENT.value:
        text = "not answered: no agent was free"
    else:
        text = str(doc.get("hangup_cause") or outcome)
    return f"outbound: {text}" if outbound else text


def _minutes(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


# ---- index projection: what the in-memory index keeps of each document ----

def index_terms(kind: str, doc: dict[str, Any]) -> list[str]:
    """Exact-match lookup terms that point at this document's key."""
    if kind == "customer":
        return [f"tel:{p}" for p in doc.get("phones", ())] + [f"mail:{e}" for e in doc.get("emails", ())]
    if kind == "conversation" and doc.get("state") == ConversationState.OPEN.value:
        return [f"open:{doc['channel']}:{doc['number']}"]
    return []


def index_entry(kind: str, doc_id: int, doc: dict[str, Any]) -> list[Any]:
    """[doc_id, key, at, customer_id or None, terms, waiting for sync]; stored in shard sidecars."""
    customer = doc.get("customer_id") if kind in INTERACTION_KINDS else None
    pending = doc.get("_sync", {}).get("state") == SyncState.PENDING.value
    return [doc_id, doc["_key"], doc["_at"], customer, index_terms(kind, doc), pending]
