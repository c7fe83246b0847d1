"""The agent console's HTTP server: static page, login, WebRTC signalling and a WebSocket.

The WebSocket carries commands from the page (``{"op": ...}``) and pushes the agent's
state, offers and call updates back. Everything the page shows comes from hub events.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from appliance.acd.agent import AgentSnapshot, AgentState
from appliance.acd.events import AgentChanged, OfferEnded, OfferMade
from appliance.acd.router import AcdError
from appliance.call_events import CallUpdate
from appliance.messaging import MessageEvent
from appliance.transfer_requests import TransferNotice
from appliance.web.commands import command
from appliance.web.deps import ConsoleDeps
from appliance.web.sessions import LOGIN_FAILURE_LIMIT, LOGIN_FAILURE_WINDOW_S, AgentSession
from media.webrtc import SignallingError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
RECONNECT_GRACE_S = 20.0  # an agent whose console drops is logged out after this, unless on a call
WS_HEARTBEAT_S = 15.0  # aiohttp ping interval; a dead browser is noticed within about twice this


DEPS = web.AppKey("deps", ConsoleDeps)


def build_app(deps: ConsoleDeps) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[DEPS] = deps
    app.router.add_get("/", _index)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/rtc", _rtc)
    app.router.add_get("/api/ws", _ws)
    app.router.add_get("/api/conversations", _conversations)
    app.router.add_get("/healthz", _health)
    app.router.add_static("/static", STATIC, show_index=False)
    app.on_shutdown.append(_close_sockets)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="request body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


async def _login(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    source = request.remote or "?"
    wait_s = deps.sessions.login_wait(source)
    if wait_s > 0:
        minutes = max(1, math.ceil(wait_s / 60))
        log.info("console login refused for %s: locked out for %.0f s more after failed attempts", source, wait_s)
        return web.json_response(
            {"error": f"too many failed log-ins from this address; try again in {minutes} minute{'s' * (minutes > 1)}"},
            status=429, headers={"Retry-After": str(math.ceil(wait_s))})
    body = await _json_body(request)
    agent_id, password = str(body.get("agent_id", "")).strip(), str(body.get("password", ""))
    agent = deps.agent_config(agent_id)
    # the same answer for an unknown agent and a wrong password: ids cannot be enumerated
    ok = agent is not None and await asyncio.get_running_loop().run_in_executor(None, agent.check_password, password)
    if not ok:
        log.info("console login failed for %r from %s", agent_id, source)
        if deps.sessions.login_failed(source):
            log.warning("console: %d failed log-ins from %s within %.0f min; refusing log-ins from that address "
                        "for %.0f min (an agent who forgot a password: the admin sets a new one in the TUI)",
                        LOGIN_FAILURE_LIMIT, source, LOGIN_FAILURE_WINDOW_S / 60, LOGIN_FAILURE_WINDOW_S / 60)
        return web.json_response({"error": "unknown agent or wrong password"}, status=401)
    session, old = deps.sessions.create(agent_id)
    if old is not None:
        for ws in list(old.sockets):
            await ws.close(code=4001, message=b"logged in elsewhere")
        if old.media is not None:
            await deps.sessions.close_media(old.media)
    log.info("agent %s logged in to the console from %s", agent_id, source)
    return web.json_response({"token": session.token, "agent_id": agent_id, "name": agent.name})


def _session(request: web.Request, token: str | None) -> AgentSession:
    session = request.app[DEPS].sessions.by_token(token)
    if session is None:
        raise web.HTTPUnauthorized(text="log in first")
    return session


async def _rtc(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    body = await _json_body(request)
    session = _session(request, request.headers.get("Authorization", "").removeprefix("Bearer ").strip())
    sdp, kind = body.get("sdp"), body.get("type")
    if not isinstance(sdp, str) or kind != "offer":
        raise web.HTTPBadRequest(text="expected {sdp, type: 'offer'}")
    try:
        answer_sdp, answer_type = await deps.sessions.new_media(session, sdp, kind)
    except (SignallingError, ValueError) as exc:
        log.info("agent %s sent an unusable WebRTC offer: %s", session.agent_id, exc)
        raise web.HTTPBadRequest(text=f"unusable offer: {exc}") from None
    log.info("agent %s audio negotiated", session.agent_id)
    return web.json_response({"sdp": answer_sdp, "type": answer_type})


async def _conversations(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    _session(request, request.headers.get("Authorization", "").removeprefix("Bearer ").strip())
    convs = await deps.conversations() if deps.conversations is not None else []
    return web.json_response({"conversations": convs, "lines": deps.messages.lines() if deps.messages else []})


def _message_doc(m: MessageEvent) -> dict[str, Any]:
    return {"type": "sms", "conversation_id": m.conversation_id, "key": m.key, "direction": m.direction,
            "number": m.number, "body": m.body, "at": m.at, "line_id": m.line_id, "status": m.status,
            "customer_id": m.customer_id}


def _agent_doc(snap: AgentSnapshot) -> dict[str, Any]:
    return {
        "agent_id": snap.agent_id,
        "name": snap.name,
        "state": str(snap.state),
        "since": snap.since,
        "pause_reason": snap.pause_reason,
        "call_id": snap.call_id,
        "wrapup_deadline": snap.wrapup_deadline,
        "calls_handled": snap.calls_handled,
        "queues": list(snap.queues),
    }


def _event_doc(agent_id: str, event: Any) -> dict[str, Any] | None:
    if isinstance(event, AgentChanged) and event.agent.agent_id == agent_id:
        return {"type": "state", "agent": _agent_doc(event.agent)}
    if isinstance(event, AgentChanged):  # colleagues' states, for the transfer picker
        return {"type": "agents", "agents": [_agent_doc(event.agent)]}
    if isinstance(event, TransferNotice) and event.agent_id == agent_id:
        return {"type": "transfer", "call_id": event.call_id, "state": event.state, "role": event.role,
                "peer": event.peer, "caller": event.caller, "message": event.message}
    if isinstance(event, OfferMade) and event.agent_id == agent_id:
        return {
            "type": "offer",
            "call_id": event.call_id,
            "caller": event.caller_number,
            "caller_name": event.caller_name,
            "queue": event.queue_id,
            "line": event.line_id,
            "enqueued_at": event.enqueued_at,
            "waited_s": round(event.offered_at - event.enqueued_at, 1),
            "ring_timeout_s": event.ring_timeout_s,
            "customer_id": event.customer_id,
            "customer_name": event.customer_name,
            "history": [{"kind": h.kind, "at": h.at, "summary": h.summary} for h in event.history],
            "kind": event.kind,
            "from_agent": event.from_agent,
            "from_agent_name": event.from_agent_name,
        }
    if isinstance(event, OfferEnded) and event.agent_id == agent_id:
        return {"type": "offer_ended", "call_id": event.call_id, "reason": event.reason}
    if isinstance(event, MessageEvent):
        return _message_doc(event)  # the SMS inbox is shared by every agent
    if isinstance(event, CallUpdate) and event.call.agent_id == agent_id:
        c = event.call
        return {"type": "call", "call_id": c.call_id, "state": str(c.state), "caller": c.caller_number,
                "caller_name": c.caller_name, "since": c.since, "cause": c.hangup_cause, "recording": c.recording,
                "direction": c.direction, "line": c.line_id, "on_hold": c.on_hold,
                "keys": c.keys}
    return None


async def _ws(request: web.Request) -> web.WebSocketResponse:
    deps = request.app[DEPS]
    session = _session(request, request.query.get("token"))
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    agent_id = session.agent_id
    session.sockets.add(ws)
    timer = deps.logout_timers.pop(agent_id, None)
    if timer is not None:
        timer.cancel()
    acd_sub = deps.hub.topic("acd").subscribe(maxsize=256)
    call_sub = deps.hub.topic("calls").subscribe(maxsize=256)
    msg_sub = deps.hub.topic("messages").subscribe(maxsize=256)
    pump = asyncio.create_task(_pump(ws, agent_id, acd_sub, call_sub, msg_sub), name=f"console-pump:{agent_id}")
    try:
        deps.acd.login(agent_id)
        queues = [q for q in deps.queues() if q.id in deps.acd.snapshot(agent_id).queues]
        current = next((c for c in deps.live_calls() if c.agent_id == agent_id and str(c.state) in ("on_call", "dialing")), None)
        shown = deps.transfers.transfer_shown(agent_id) if deps.transfers is not None else None
        await ws.send_json({
            "call": _event_doc(agent_id, CallUpdate(current)) if current is not None else None,
            "transfer": _event_doc(agent_id, shown) if shown is not None else None,
            "type": "hello",
            "agent": _agent_doc(deps.acd.snapshot(agent_id)),
            "dispositions": list(dict.fromkeys(d for q in queues for d in q.dispositions)),  # as configured
            "queues": [{"id": q.id, "name": q.name} for q in queues],
            "agents": [_agent_doc(a) for a in deps.acd.agents() if a.agent_id != agent_id],
            "transfer_queues": [{"id": q.id, "name": q.name} for q in deps.queues()] if deps.transfers else [],
            "device": deps.devices.device(agent_id).value if deps.devices is not None else "browser",
            "phone": (deps.agent_config(agent_id).phone if deps.agent_config(agent_id) is not None else ""),
            "can_dial": deps.dial is not None,
        })
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            reply = await command(deps, session, msg.data, ws)
            if reply is not None:
                await ws.send_json(reply)
    finally:
        pump.cancel()
        acd_sub.close()
        call_sub.close()
        msg_sub.close()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        session.sockets.discard(ws)
        if not session.sockets and deps.sessions.by_token(session.token) is session:
            loop = asyncio.get_running_loop()
            deps.logout_timers[agent_id] = loop.call_later(RECONNECT_GRACE_S, _logout_if_gone, deps, session)
    return ws


async def _pump(ws: web.WebSocketResponse, agent_id: str, *subs: Any) -> None:
    getters = {asyncio.ensure_future(s.get()): s for s in subs}
    try:
        while True:
            done, _ = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                sub = getters.pop(fut)
                try:
                    event = fut.result()
                except StopAsyncIteration:
                    return
                getters[asyncio.ensure_future(sub.get())] = sub
                doc = _event_doc(agent_id, event)
                if doc is not None and not ws.closed:
                    await ws.send_json(doc)
    finally:
        for fut in getters:
            fut.cancel()


def _logout_if_gone(deps: ConsoleDeps, session: AgentSession) -> None:
    deps.logout_timers.pop(session.agent_id, None)
    if session.sockets:
        return
    snap = deps.acd.snapshot(session.agent_id)
    if snap.state is AgentState.ON_CALL:
        return  # keep the call; the agent can reconnect and hang up
    with contextlib.suppress(AcdError):
        deps.acd.logout(session.agent_id)
    log.info("agent %s logged out: console closed for %.0fs", session.agent_id, RECONNECT_GRACE_S)


async def _close_sockets(app: web.Application) -> None:
    deps = app[DEPS]
    for session in deps.sessions.all():
        for ws in list(session.sockets):
            await ws.close(code=1001, message=b"box shutting down")
