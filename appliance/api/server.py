"""The local admin API on a Unix socket: ``data_dir/run/api.sock`` guarded by ``api.token``.

Only local users who can open the socket (mode 0660) *and* read the token (mode 0600)
get in. Routes (every message is ``{"v": 1, "type": ...}``, see ``schema``):

  GET  /v1/snapshot            the whole site
  WS   /v1/events              a snapshot, then deltas (a fresh snapshot if the client lags)
  WS   /v1/logs?level=INFO     the recent log ring, then new records
  POST /v1/<command>           agents, queues, members, lines, dial plan, calls, messages, recordings

``start_local_api(box)`` starts it on a running ``Box`` and returns the stop hook.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import pwd
import secrets
import socket
import struct
import weakref
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import WSMsgType, web

from appliance.admin import Admin
from appliance.api import schema as s
from appliance.api.archive import ArchiveError
from appliance.api.feed import RESYNC, SiteFeed
from appliance.api.logring import LogRing
from appliance.config import DEFAULT_CONFIG_NAME

log = logging.getLogger(__name__)

SOCKET_NAME = "api.sock"
TOKEN_NAME = "api.token"
SOCKET_MODE = 0o660  # owner and the admin group may connect; the token is the second lock
SHUTDOWN_TIMEOUT_S = 2.0  # open admin requests get this long at box shutdown; none of them matter to calls
WS_HEARTBEAT_S = 20.0  # ping idle streams so a vanished SSH session's socket is noticed within ~40 s
MAX_BODY = 64 * 1024  # commands are small; anything bigger is a mistake

ADMIN: web.AppKey[Admin] = web.AppKey("admin", Admin)
RING: web.AppKey[LogRing] = web.AppKey("ring", LogRing)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("sockets", weakref.WeakSet)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(s.encode(s.ApiError(message)), status=status)


@web.middleware
async def _auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
        log.warning("local API: refused a request without the right token (%s)", _actor(request))
        return _error(401, "wrong or missing API token")
    try:
        return await handler(request)
    except (s.SchemaError, ArchiveError) as exc:
        return _error(400, str(exc))
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug here must reach the admin as an answer, never touch the box
        log.exception("local API: %s %s failed", request.method, request.path)
        return _error(500, f"the box could not do that: {exc}")


def _actor(request: web.Request) -> str:
    """Who is on the other end of the socket: the peer's uid (SO_PEERCRED) and user name."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except (AttributeError, OSError):
        return "local admin"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


async def _snapshot(request: web.Request) -> web.Response:
    return web.json_response(s.encode(request.app[ADMIN].snapshot()))


async def _events(request: web.Request) -> web.WebSocketResponse:
    admin = request.app[ADMIN]
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    sub = admin.feed.deltas.subscribe()
    sender = asyncio.get_running_loop().create_task(_send_deltas(ws, admin, sub), name="api-events-send")
    try:
        async for msg in ws:  # the client sends nothing; this notices the close
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        sub.close()
        await _end(sender)
    return ws


async def _end(task: asyncio.Task[None]) -> None:
    """Stop a stream's sender; its end (cancelled, or the peer vanished mid-send) is expected.

    ``asyncio.wait`` does not raise the task's outcome, so a cancellation of *this* handler
    still propagates while the sender's own CancelledError/ConnectionError is consumed.
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.debug("local API stream ended: %s", task.exception())


async def _send_deltas(ws: web.WebSocketResponse, admin: Admin, sub: Any) -> None:
    dropped = sub.statistics().dropped
    await ws.send_json(s.encode(admin.snapshot()))
    while True:
        event = await sub.get()
        now_dropped = sub.statistics().dropped
        if now_dropped != dropped or event is RESYNC:  # deltas were lost (by this client or the feed)
            dropped = now_dropped
            await ws.send_json(s.encode(admin.snapshot()))
            continue
        await ws.send_json(s.encode(event))


async def _logs(request: web.Request) -> web.WebSocketResponse:
    ring = request.app[RING]
    level_name = request.query.get("level", "DEBUG").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        return _error(400, f"unknown log level {level_name!r}")
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    follower = ring.follow(level)  # follow first, then read the ring: nothing falls between
    sender = asyncio.get_running_loop().create_task(_send_logs(ws, ring, follower, level), name="api-logs-send")
    try:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        follower.close()
        await _end(sender)
    return ws


async def _send_logs(ws: web.WebSocketResponse, ring: LogRing, follower: Any, level: int) -> None:
    last = 0
    for entry in ring.recent(level):
        await ws.send_json(s.encode(entry))
        last = entry.seq
    while (entry := await follower.get()) is not None:
        if entry.seq > last:
            await ws.send_json(s.encode(entry))


async def _simulate(request: web.Request) -> web.Response:
    """Drive the box's built-in simulated lines (demo and newcomers): call, sms, hangup, keys, callee."""
    from appliance.simulation import DTMF_DIGITS, SimulationError

    control = getattr(request.app[ADMIN].box, "simulation", None)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "request body must be JSON")
    if control is None or not isinstance(body, dict):
        return _error(400, "no simulated lines on this box")
    op, line = request.match_info["op"], str(body.get("line", "gsm"))
    number = body.get("number") or None
    try:
        if op == "call":
            text = control.call(line, str(number) if number else None)
        elif op == "sms":
            text = control.sms(str(number or "+447700900123"), str(body.get("text", "")))
        elif op == "hangup":
            text = control.hangup(line)
        elif op == "keys":
            digits = body.get("digits")
            if not isinstance(digits, str) or not digits.strip() or set(digits.strip().upper()) - DTMF_DIGITS:
                return _error(400, "digits must be a string of DTMF keys 0-9 * # A-D")
            text = control.keys(line, digits)
        elif op == "callee":
            after, hang = body.get("answer_after_s"), body.get("hangup_after_s")
            if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in (after, hang)):
                return _error(400, "answer_after_s and hangup_after_s must be numbers")
            text = control.callee(line, str(body.get("outcome", "answer")), answer_after_s=after,
                                  hangup_after_s=hang, number=str(number) if number else None)
        else:
            return _error(404, f"unknown simulation {op!r}: use call, sms, hangup, keys or callee")
    except SimulationError as exc:
        return _error(409, str(exc))
    log.info("local API: simulation %s on %s by %s", op, line, _actor(request))
    return web.json_response({"v": 1, "type": "sim_result", "message": text})


def _command(expect: type, call: Callable[[Admin, Any, str], Awaitable[Any]]):
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body must be JSON")
        cmd = s.decode(body, expect)
        result = await call(request.app[ADMIN], cmd, _actor(request))
        return web.json_response(s.encode(result))

    return handler


async def _done(value: Any) -> Any:
    """A read that needs no await, for the awaiting command table."""
    return value


ROUTES: dict[str, tuple[type, Callable[[Admin, Any, str], Awaitable[Any]]]] = {
    "put_agent": (s.PutAgent, lambda a, c, who: a.put_agent(c, who)),
    "delete_agent": (s.DeleteAgent, lambda a, c, who: a.delete_agent(c, who)),
    "set_password": (s.SetPassword, lambda a, c, who: a.set_password(c, who)),
    "put_queue": (s.PutQueue, lambda a, c, who: a.put_queue(c, who)),
    "delete_queue": (s.DeleteQueue, lambda a, c, who: a.delete_queue(c, who)),
    "set_members": (s.SetMembers, lambda a, c, who: a.set_members(c, who)),
    "line_command": (s.LineCommand, lambda a, c, who: a.line_command(c, who)),
    "dial_plan": (s.GetDialPlan, lambda a, c, who: _done(a.dial_plan())),
    "route": (s.RouteQuery, lambda a, c, who: _done(a.route(c))),
    "calls": (s.CallQuery, lambda a, c, who: a.archive.search_calls(c)),
    "call": (s.GetCall, lambda a, c, who: a.archive.get_call(c)),
    "messages": (s.MessageQuery, lambda a, c, who: a.archive.messages(c)),
    "recordings": (s.CallQuery, lambda a, c, who: a.archive.recordings(c)),
    "export_recording": (s.ExportRecording, lambda a, c, who: a.archive.export_recording(c, who)),
    "delete_recording": (s.DeleteRecording, lambda a, c, who: a.archive.delete_recording(c, who)),
}


def build_api(admin: Admin, ring: LogRing, token: str) -> web.Application:
    app = web.Application(middlewares=[_auth], client_max_size=MAX_BODY)
    app[ADMIN] = admin
    app[RING] = ring
    app[TOKEN] = token
    app[SOCKETS] = weakref.WeakSet()
    app.router.add_get("/v1/snapshot", _snapshot)
    app.router.add_get("/v1/events", _events)
    app.router.add_get("/v1/logs", _logs)
    for name, (expect, call) in ROUTES.items():
        app.router.add_post(f"/v1/{name}", _command(expect, call))
    app.router.add_post("/v1/sim/{op}", _simulate)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"box shutting down")


def _bind_socket(path: Path) -> socket.socket:
    """Bind under a temporary name, set the mode, then rename: never a moment with looser rights."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, SOCKET_MODE)
        os.replace(tmp, path)  # a stale socket from a crashed box is replaced (the box lock says we own the folder)
    except OSError:
        sock.close()
        raise
    return sock


def _write_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def default_config_path(cfg: Any) -> Path:
    """Where admin changes go: the file the box loaded, else ./branchline.toml (what a restart reads)."""
    if cfg.source and cfg.source != "embedded defaults":
        return Path(cfg.source)
    return Path(DEFAULT_CONFIG_NAME).resolve()


async def start_local_api(box: Any, *, config_path: Path | None = None) -> Callable[[], Awaitable[None]]:
    """Serve the local API for a started ``box``; returns the hook that stops it."""
    run_dir = box.cfg.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    feed = SiteFeed(box)
    await feed.start()
    admin = Admin(box, config_path or default_config_path(box.cfg), feed)
    ring = LogRing()
    root = logging.getLogger()
    root.addHandler(ring)
    sock_path, token_path = run_dir / SOCKET_NAME, run_dir / TOKEN_NAME
    runner: web.AppRunner | None = None
    try:
        token = _write_token(token_path)
        runner = web.AppRunner(build_api(admin, ring, token), shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, _bind_socket(sock_path))
        await site.start()
    except BaseException:
        root.removeHandler(ring)
        if runner is not None:
            await runner.cleanup()
        await feed.stop()
        raise
    log.info("local admin API on %s (config changes go to %s)", sock_path, admin.config_path)

    async def stop() -> None:
        for path in (sock_path, token_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        await runner.cleanup()
        await feed.stop()
        root.removeHandler(ring)

    return stop
