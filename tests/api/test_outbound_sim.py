"""An agent's outbound call through the box's simulated GSM modem, whose far end answers with a
tone (drivers.sim.callee): the API shows it dialing on the GSM line, then on call, then stores it."""
from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.api import schema as s
from appliance.api.client import SocketClient
from tests.api.running_box import RunningBox
from tests.api.scripted import CONFIG, DIAL_PLAN, connect_agent

LINE_UP_TIMEOUT_S = 30.0  # the simulated modem identifies itself and registers within a few seconds
CALL_TIMEOUT_S = 20.0  # the simulated callee answers after 1 s


async def _next(stream, kind: type, pred, timeout: float = CALL_TIMEOUT_S):
    async with asyncio.timeout(timeout):
        async for ev in stream:
            if isinstance(ev, kind) and pred(ev):
                return ev
    raise AssertionError("stream ended")


async def test_outbound_call_on_the_simulated_gsm_line(tmp_path: Path) -> None:
    (tmp_path / "branchline.toml").write_text(CONFIG.replace("gsm = false", "gsm = true") + DIAL_PLAN)
    rb = RunningBox(tmp_path).start()
    try:
        connect_agent(rb, "alice")
        async with SocketClient(rb.run_dir) as client:
            stream = client.events()
            site = await anext(stream)
            gsm_up = lambda ln: ln.kind == "gsm" and ln.state == "up" and ln.line_id.startswith("gsm:")  # noqa: E731
            if not any(gsm_up(ln) for ln in site.lines):
                await _next(stream, s.LineChanged, lambda ev: gsm_up(ev.line), LINE_UP_TIMEOUT_S)
            gsm_id = next(ln.line_id for ln in (await client.snapshot()).lines if gsm_up(ln))
            route = await client.route("07700900123")
            assert route.lines[0] == s.RouteLine(gsm_id, "up", route.lines[0].detail)
            call_id = await rb.acall(lambda: rb.box.outbound.dial("alice", "07700900123"))
            dialing = await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == call_id and ev.call.line_id)
            assert (dialing.call.direction, dialing.call.state, dialing.call.line_id) == ("outbound", "dialing", gsm_id)
            await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == call_id and ev.call.state == "on_call")
            assert await rb.acall(lambda: rb.box.outbound.agent_hangup("alice"))
            ended = await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == call_id and ev.call.state == "ended")
            assert ended.call.hangup_cause == "agent hung up"
            await _next(stream, s.AgentChanged, lambda ev: ev.agent.agent_id == "alice" and ev.agent.state == "wrap_up")
            found = (await client.search_calls(s.CallQuery(number="900123"))).calls
            await stream.aclose()
        assert [(r.call_id, r.direction, r.line_id, r.outcome, r.to_number) for r in found] == \
            [(call_id, "outbound", gsm_id, "answered", "07700900123")]
    finally:
        rb.stop()
