"""The agent console's commands: ``{"op": ...}`` messages from the page's WebSocket.

Each command answers at once with an optional reply (an error to show, say); slow work
(an SMS, keys on the line) runs in a task of the agent's session and reports when done.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from appliance.acd.router import AcdError
from appliance.agent_devices import Device, DeviceError
from appliance.call_controls import ControlError
from appliance.messaging import MessageCenter, SmsSendError
from appliance.outbound import OutboundError
from appliance.transfer_requests import TransferError, TransferOps, parse_target
from appliance.web.deps import ConsoleDeps
from appliance.web.sessions import AgentSession

log = logging.getLogger(__name__)

PAUSE_REASON_MAX = 40  # every console and the TUI show it; "training", "lunch", "team meeting" fit


async def command(deps: ConsoleDeps, session: AgentSession, text: str, ws: web.WebSocketResponse) -> dict[str, Any] | None:
    try:
        cmd = json.loads(text)
        op = cmd["op"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return {"type": "error", "message": "malformed command"}
    agent_id = session.agent_id
    acd = deps.acd
    try:
        if op == "available":
            problem = (deps.devices.ready_problem(agent_id) if deps.devices is not None
                       else None if deps.sessions.media_for(agent_id) is not None
                       else "connect your audio before going available")
            if problem:
                return {"type": "error", "message": problem}
            acd.set_available(agent_id)
        elif op == "device":
            if deps.devices is None:
                return {"type": "error", "message": "desk phones are not available on this box"}
            device = deps.devices.set_device(agent_id, str(cmd.get("device", "")))
            return {"type": "device", "device": device.value}
        elif op == "dial":
            if deps.dial is None:
                return {"type": "error", "message": "outbound calls are not available on this box"}
            call_id = deps.dial(agent_id, str(cmd.get("number", "")))
            return {"type": "dialing", "call_id": call_id, "number": cmd.get("number")}
        elif op == "pause":
            reason = str(cmd.get("reason", "break")).strip()
            if len(reason) > PAUSE_REASON_MAX:
                return {"type": "error", "message": f"a pause reason is at most {PAUSE_REASON_MAX} characters"}
            acd.pause(agent_id, reason)
        elif op == "answer":
            if deps.devices is not None and deps.devices.device(agent_id) is Device.PHONE:
                return {"type": "error", "message": "pick up your desk phone to answer"}
            acd.accept(agent_id, str(cmd.get("call_id")))
        elif op == "reject":
            acd.reject(agent_id, str(cmd.get("call_id")))
        elif op == "hangup":
            if not deps.hangup(agent_id):
                return {"type": "error", "message": "you have no call to hang up"}
        elif op == "wrapup":
            disposition = cmd.get("disposition") or None
            acd.end_wrapup(agent_id, str(disposition) if disposition else None)
        elif op == "logout":
            acd.logout(agent_id)
            deps.sessions.drop(session)
            if session.media is not None:
                await deps.sessions.close_media(session.media)
                session.media = None
            return {"type": "logged_out"}  # only now does the page leave (a refused log-out keeps the call)
        elif op == "sms_reply":
            if deps.messages is None:
                return {"type": "error", "message": "SMS is not available on this box"}
            # sending can take a minute on a slow network: never hold the agent's other commands
            _spawn(session, _sms_reply(deps.messages, ws, str(cmd.get("number", "")), str(cmd.get("text", ""))),
                   f"sms-reply:{agent_id}")
            return {"type": "sms_sending", "number": cmd.get("number")}
        elif op in ("hold", "resume"):
            if deps.hold is None or not deps.hold(agent_id, op == "hold"):
                return {"type": "error", "message": "you have no answered call to hold"}
        elif op == "keys":
            if deps.keys is None:
                return {"type": "error", "message": "keys cannot be sent on this box"}
            # a few digits take a second or so on the wire: never hold the agent's other commands
            _spawn(session, _send_keys(deps.keys, ws, agent_id, str(cmd.get("digits", ""))), f"keys:{agent_id}")
        elif op in TRANSFER_OPS:
            if deps.transfers is None:
                return {"type": "error", "message": "transfers are not available on this box"}
            transfer_op(deps.transfers, agent_id, op, cmd)
        elif op == "ping":
            return {"type": "pong", "t": time.time()}
        else:
            return {"type": "error", "message": f"unknown command {op!r}"}
    except (AcdError, ControlError, DeviceError, OutboundError, TransferError) as exc:
        return {"type": "error", "message": str(exc)}
    return None


TRANSFER_OPS = frozenset({"transfer", "consult", "complete_transfer", "cancel_consult", "retrieve"})


def transfer_op(transfers: TransferOps, agent_id: str, op: str, cmd: dict[str, Any]) -> None:
    """``{"op": "transfer", "call_id", "to": {"agent"|"queue"|"number": ...}}``, ``{"op": "consult",
    "call_id", "agent"}``, ``{"op": "complete_transfer"|"cancel_consult"|"retrieve", "call_id"}``."""
    call_id = str(cmd["call_id"]) if cmd.get("call_id") else None
    if op == "transfer":
        transfers.transfer(agent_id, call_id, parse_target(cmd.get("to")))
    elif op == "consult":
        transfers.consult(agent_id, call_id, str(cmd.get("agent") or "").strip())
    elif op == "complete_transfer":
        transfers.complete_transfer(agent_id, call_id)
    elif op == "cancel_consult":
        transfers.cancel_consult(agent_id, call_id)
    else:
        transfers.retrieve(agent_id, call_id)


async def _sms_reply(messages: MessageCenter, ws: web.WebSocketResponse, number: str, text: str) -> None:
    try:
        await messages.reply(number, text)
    except SmsSendError as exc:
        await _tell(ws, {"type": "error", "message": f"SMS to {number} not sent: {exc}"})


async def _send_keys(keys: Callable[[str, str], Awaitable[bool]], ws: web.WebSocketResponse, agent_id: str,
                     digits: str) -> None:
    try:
        sent = await keys(agent_id, digits)
        reply = {"type": "keys_sent", "digits": digits} if sent else {
            "type": "error", "message": "you have no answered call to send keys to"}
    except ControlError as exc:
        reply = {"type": "error", "message": str(exc)}
    await _tell(ws, reply)


async def _tell(ws: web.WebSocketResponse, doc: dict[str, Any]) -> None:
    """A late answer to a command: the page may have gone meanwhile (then nobody is told)."""
    if not ws.closed:
        with contextlib.suppress(ConnectionResetError):
            await ws.send_json(doc)


def _spawn(session: AgentSession, coro: Awaitable[None], name: str) -> None:
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    session.tasks.add(task)

    def finished(done: asyncio.Task[None]) -> None:
        session.tasks.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("console: %s failed: %r", done.get_name(), done.exception())

    task.add_done_callback(finished)

