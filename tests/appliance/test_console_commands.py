"""The agent console's server over real HTTP and WebSocket (aiohttp's test server): log-in
lockout after repeated failures, and commands that must be refused with a clear message."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from appliance.acd.router import Acd
from appliance.config import AgentConfig, QueueConfig, hash_password
from appliance.hub import Hub
from appliance.web import sessions as sessions_mod
from appliance.web.commands import PAUSE_REASON_MAX
from appliance.web.deps import ConsoleDeps
from appliance.web.server import build_app
from appliance.web.sessions import Sessions

WAIT_S = 5.0
ALICE = AgentConfig("alice", "Alice Martin", hash_password("alice-pw"), queues=("support",))


@pytest.fixture
async def console():
    hub = Hub()
    acd = Acd(agents=[("alice", "Alice Martin", ("support",))], queues=["support"], ring_timeout_s=5.0,
              wrapup_s=30.0, pause_on_missed_offer=True, publish=hub.topic("acd").publish)
    deps = ConsoleDeps(acd=acd, hub=hub, sessions=Sessions(), agent_config={"alice": ALICE}.get,
                       queues=lambda: (QueueConfig("support", "Support"),), hangup=lambda agent_id: False,
                       live_calls=list, hold=lambda agent_id, on: False)
    client = TestClient(TestServer(build_app(deps)))
    await client.start_server()
    try:
        yield client, acd
    finally:
        await client.close()
        acd.close()


async def login(client: TestClient, password: str) -> Any:
    return await client.post("/api/login", json={"agent_id": "alice", "password": password})


async def test_failed_logins_lock_the_address_out_with_a_clear_wait(console, caplog) -> None:
    client, _ = console
    caplog.set_level(logging.INFO, logger="appliance.web.server")
    for _ in range(sessions_mod.LOGIN_FAILURE_LIMIT):
        res = await login(client, "wrong")
        assert res.status == 401 and (await res.json())["error"] == "unknown agent or wrong password"
    assert sum("failed log-ins from" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records) == 1
    res = await login(client, "alice-pw")  # the right password too: the address is locked out
    body = await res.json()
    assert res.status == 429 and body["error"] == "too many failed log-ins from this address; try again in 5 minutes"
    assert 290 <= int(res.headers["Retry-After"]) <= 300


async def test_commands_refused_with_a_message(console) -> None:
    client, acd = console
    token = (await (await login(client, "alice-pw")).json())["token"]
    async with client.ws_connect(f"/api/ws?token={token}") as ws:
        hello = await ws.receive_json(timeout=WAIT_S)
        assert hello["type"] == "hello" and hello["transfer"] is None and hello["call"] is None
        await ws.send_json({"op": "pause", "reason": "x" * (PAUSE_REASON_MAX + 1)})
        assert await next_reply(ws) == {"type": "error", "message": "a pause reason is at most 40 characters"}
        await ws.send_json({"op": "hold"})
        assert await next_reply(ws) == {"type": "error", "message": "you have no answered call to hold"}
        assert acd.snapshot("alice").pause_reason != "x" * (PAUSE_REASON_MAX + 1)
        await ws.send_json({"op": "keys", "digits": "1"})
        assert await next_reply(ws) == {"type": "error", "message": "keys cannot be sent on this box"}


async def next_reply(ws) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The next message that answers a command (state pushes are skipped)."""
    while True:
        msg = await ws.receive_json(timeout=WAIT_S)
        if msg["type"] not in ("state", "agents"):
            return msg


async def test_log_out_is_refused_during_a_call_and_confirmed_otherwise(console) -> None:
    client, acd = console
    token = (await (await login(client, "alice-pw")).json())["token"]
    async with client.ws_connect(f"/api/ws?token={token}") as ws:
        assert (await ws.receive_json(timeout=WAIT_S))["type"] == "hello"
        acd.start_outbound("alice", "out-1")  # alice is on a call
        await ws.send_json({"op": "logout"})
        refused = await next_reply(ws)
        assert refused["type"] == "error" and "hang up" in refused["message"]  # the page stays on the call
        acd.call_ended("alice", "out-1", on_wrapup_done=lambda d: None)
        acd.end_wrapup("alice", None)
        await ws.send_json({"op": "logout"})
        assert await next_reply(ws) == {"type": "logged_out"}
