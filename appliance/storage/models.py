"""Frozen views the store hands out: customers, their interactions, conversations, alarms, sync state."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

CustomerId = NewType("CustomerId", str)
ConversationId = NewType("ConversationId", str)


class SyncState(StrEnum):
    PENDING = "PENDING"  # not yet acknowledged by the cloud (or changed since)
    ACKED = "ACKED"  # the cloud stored this revision
    DEAD = "DEAD"  # non-retryable; kept and shown as an alarm


@dataclass(frozen=True, slots=True)
class SyncInfo:
    state: SyncState
    attempts: int = 0
    next_at: float = 0.0


class AlarmKind(StrEnum):
    CORRUPT_SHARD = "corrupt_shard"  # a data file failed its checksum and was moved aside
    DISK_LOW = "disk_low"  # free space under the floor: new recordings are refused
    RECORDING_REPAIRED = "recording_repaired"  # a recording left open by a crash was repaired
    RECORDING_UNREPAIRABLE = "recording_unrepairable"
    WRITE_FAILED = "write_failed"  # a commit failed (I/O error); callers got the error


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: AlarmKind
    subject: str  # file name or component, never personal data
    message: str  # one line for the operator
    at: float


class ConversationState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Channel(StrEnum):
    SMS = "sms"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: CustomerId
    name: str | None
    phones: tuple[str, ...]  # normalised: "+" and digits only
    emails: tuple[str, ...]  # lower case
    created_at: float
    updated_at: float
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One contact with a customer: a call, an SMS or a chat message."""

    kind: str  # "call" | "sms" | "chat"
    key: str  # call_id or message key
    msg_id: str
    customer_id: CustomerId | None
    at: float
    number: str | None  # the customer's number on this interaction
    summary: str  # outcome for calls, first 80 characters for messages


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: ConversationId
    channel: Channel
    number: str
    customer_id: CustomerId | None
    state: ConversationState
    opened_at: float
    last_at: float
    closed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    msg_id: str
    conversation_id: ConversationId
    channel: Channel
    direction: str  # "in" | "out"
    number: str
    body: str
    at: float
    customer_id: CustomerId | None = None
