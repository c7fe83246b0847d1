"""SMS conversations: inbound messages from any line become conversation messages, and
agents' replies go out through a line that can send SMS.

Lines register a sender; the console and the admin API call ``reply``. Every stored
message is published on the hub topic ``messages`` so consoles update at once.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from appliance.hub import Topic
from appliance.numbers import to_e164

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 120.0  # a multi-part SMS with retries on a slow network can take a minute


class SmsSendError(Exception):
    """The message could not be sent; the text is for the agent."""


@dataclass(frozen=True, slots=True)
class InboundSms:
    line_id: str
    sender: str  # number or alphanumeric sender id
    text: str
    at: float
    complete: bool = True  # False: parts were missing when the reassembly timed out
    decodable: bool = True  # False: the PDU could not be decoded; ``raw`` keeps it
    raw: tuple[str, ...] = ()  # the PDUs as received (hex)


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message stored in a conversation (either direction)."""

    conversation_id: str
    key: str
    direction: str  # "in" | "out"
    number: str
    body: str
    at: float
    line_id: str | None
    status: str  # "received" | "sent" | "failed" | "incomplete" | "undecodable"
    customer_id: str | None = None


SmsSender = Callable[[str, str], Awaitable[Any]]  # (number, text) -> whatever the line reports


class MessageCenter:
    def __init__(self, store: Any, topic: Topic, *, region: str = "") -> None:
        self._store = store
        self._topic = topic
        self._region = region
        self._senders: dict[str, SmsSender] = {}
        self._last_line: dict[str, str] = {}  # number -> line it last came in on

    def add_sender(self, line_id: str, send: SmsSender) -> None:
        self._senders[line_id] = send

    def remove_sender(self, line_id: str) -> None:
        self._senders.pop(line_id, None)

    def lines(self) -> list[str]:
        return sorted(self._senders)

    async def received(self, sms: InboundSms) -> None:
        """Persist an inbound SMS. Lines delete it from the modem only after this returns."""
        from appliance.storage import Channel

        e164 = to_e164(sms.sender, self._region)
        number = e164 or sms.sender
        if e164 is not None and await self._store.customer_by_phone(e164) is None:
            await self._store.upsert_customer(phones=(e164,))  # first contact: the SMS joins their history
        status = "received" if sms.decodable and sms.complete else ("undecodable" if not sms.decodable else "incomplete")
        body = sms.text if sms.decodable else "[undecodable message: " + " ".join(sms.raw) + "]"
        msg = await self._store.add_message(Channel.SMS, "in", number, body, at=sms.at)
        self._last_line[number] = sms.line_id
        if status != "received":
            log.warning("SMS from %s on %s stored as %s", number, sms.line_id, status)
        else:
            log.info("SMS from %s on %s stored in conversation %s", number, sms.line_id, msg.conversation_id)
        self._publish(msg, sms.line_id, status)

    async def reply(self, number: str, text: str, *, line_id: str | None = None) -> MessageEvent:
        from appliance.storage import Channel

        text = text.strip()
        if not text:
            raise SmsSendError("the message is empty")
        if len(text) > 1600:
            raise SmsSendError("the message is too long (over 1600 characters)")
        dest = to_e164(number, self._region) or number
        line = line_id or self._last_line.get(dest) or next(iter(sorted(self._senders)), None)
        send = self._senders.get(line) if line else None
        if send is None:
            raise SmsSendError("no line that can send SMS is up")
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await send(dest, text)
        except TimeoutError:
            raise SmsSendError(f"the modem on {line} did not confirm the SMS within {SEND_TIMEOUT_S:.0f}s") from None
        except Exception as exc:
            log.warning("SMS to %s via %s failed: %s", dest, line, exc)
            raise SmsSendError(f"sending failed: {exc}") from None
        msg = await self._store.add_message(Channel.SMS, "out", dest, text)
        log.info("SMS to %s sent via %s", dest, line)
        return self._publish(msg, line, "sent")

    def _publish(self, msg: Any, line_id: str | None, status: str) -> MessageEvent:
        event = MessageEvent(
            conversation_id=msg.conversation_id,
            key=msg.key,
            direction=msg.direction,
            number=msg.number,
            body=msg.body,
            at=msg.at,
            line_id=line_id,
            status=status,
            customer_id=msg.customer_id,
        )
        self._topic.publish(event)
        return event
