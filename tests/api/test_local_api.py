"""The local API against a real running box (its own loop in a thread), over the real Unix socket."""
from __future__ import annotations

import asyncio
import logging
import os
import stat
import tomllib

import aiohttp
import pytest

from appliance.api import schema as s
from appliance.api.client import ApiCommandError, ApiUnavailable, SocketClient
from appliance.config import load_config
from tests.api.running_box import RunningBox
from tests.api.seed import CALLS, publish_lines, seed_calls


async def _login(rb: RunningBox, agent_id: str, password: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rb.box.endpoints.web_url}api/login", json={"agent_id": agent_id, "password": password}) as r:
            return r.status


async def _next(stream, kind: type, pred=lambda ev: True):
    async with asyncio.timeout(10):
        async for ev in stream:
            if isinstance(ev, kind) and pred(ev):
                return ev
    raise AssertionError("stream ended")


async def test_socket_and_token_are_private_and_every_request_needs_the_token(running_box: RunningBox) -> None:
    sock, token = running_box.run_dir / "api.sock", running_box.run_dir / "api.token"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o660
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    conn = aiohttp.UnixConnector(path=str(sock))
    async with aiohttp.ClientSession(connector=conn) as http:
        async with http.get("http://box/v1/snapshot") as r:
            assert r.status == 401
            assert (await r.json()) == {"v": 1, "type": "error", "message": "wrong or missing API token"}
        async with http.get("http://box/v1/snapshot", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with http.post("http://box/v1/delete_agent", json=s.encode(s.DeleteAgent("alice"))) as r:
            assert r.status == 401
    assert running_box.box.agent_config("alice") is not None


async def test_snapshot_describes_the_running_box(running_box: RunningBox) -> None:
    async with SocketClient(running_box.run_dir) as client:
        site = await client.snapshot()
    assert site.box.branch == "test-branch" and site.box.pid == os.getpid()
    assert site.box.web_url == running_box.box.endpoints.web_url
    assert [(a.agent_id, a.state, a.queues) for a in site.agents] == [("alice", "logged_out", ("support",)),
                                                                      ("bob", "logged_out", ("support", "sales"))]
    assert [(q.queue_id, q.waiting, q.service_level) for q in site.queues] == [("support", 0, None), ("sales", 0, None)]
    sip = next(ln for ln in site.lines if ln.line_id == "sip")
    assert sip.state == "up" and sip.capabilities == ()
    assert site.calls == ()


async def test_event_stream_starts_with_a_snapshot_then_carries_agent_changes(running_box: RunningBox) -> None:
    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        assert isinstance(await anext(stream), s.SiteSnapshot)
        await running_box.acall(lambda: running_box.box.acd.login("bob"))
        ev = await _next(stream, s.AgentChanged)
        assert (ev.agent.agent_id, ev.agent.state) == ("bob", "paused")
        await stream.aclose()


async def test_created_agent_can_log_in_at_once_and_is_in_the_config_file(running_box: RunningBox) -> None:
    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        result = await client.put_agent(s.PutAgent("carol", "Carol King", ("sales",), "carol-pass-1", create=True))
        assert result == s.CommandResult(True, "agent carol created")
        ev = await _next(stream, s.AgentChanged, lambda e: e.agent.agent_id == "carol")
        assert ev.agent.queues == ("sales",)
        await stream.aclose()
    assert await _login(running_box, "carol", "carol-pass-1") == 200
    assert await _login(running_box, "carol", "wrong-pass") == 401
    cfg = load_config(running_box.config_path)  # the box would start on it
    carol = next(a for a in cfg.agents if a.id == "carol")
    assert carol.name == "Carol King" and carol.queues == ("sales",) and carol.check_password("carol-pass-1")
    assert stat.S_IMODE(running_box.config_path.stat().st_mode) == 0o600
    assert tomllib.loads(running_box.config_path.read_text())["box"]["branch"] == "test-branch"  # other sections kept


@pytest.mark.parametrize("cmd, message", [
    (s.PutAgent("Carol!", "Carol", ("support",), "carol-pass-1", True), "agent id must be"),
    (s.PutAgent("carol", "", ("support",), "carol-pass-1", True), "name must be"),
    (s.PutAgent("carol", "Carol", ("billing",), "carol-pass-1", True), "unknown queue(s): billing"),
    (s.PutAgent("carol", "Carol", ("support",), "short", True), "at least 8 characters"),
    (s.PutAgent("carol", "Carol", ("support",), None, True), "a new agent needs a password"),
    (s.PutAgent("alice", "Alice", ("support",), "alice-pass-2", True), "agent alice already exists"),
])
async def test_invalid_agent_changes_are_refused_and_nothing_is_written(running_box: RunningBox, cmd, message) -> None:
    before = running_box.config_path.read_bytes()
    async with SocketClient(running_box.run_dir) as client:
        result = await client.put_agent(cmd)
    assert not result.ok and message in result.message
    assert running_box.config_path.read_bytes() == before


async def test_password_reset_and_set_take_effect_immediately(running_box: RunningBox) -> None:
    assert await _login(running_box, "alice", "alice-secret") == 200
    async with SocketClient(running_box.run_dir) as client:
        reset = await client.set_password("alice")
        assert reset.ok and reset.password and len(reset.password) >= 12
        assert await _login(running_box, "alice", "alice-secret") == 401
        assert await _login(running_box, "alice", reset.password) == 200
        chosen = await client.set_password("alice", "alice-new-pw")
        assert chosen.ok and chosen.password is None
        assert (await client.set_password("alice", "x")).message == "password must have at least 8 characters"
    assert await _login(running_box, "alice", "alice-new-pw") == 200
    assert load_config(running_box.config_path).agents[0].check_password("alice-new-pw")


async def test_a_password_change_ends_the_agents_open_console(running_box: RunningBox) -> None:
    web = running_box.box.endpoints.web_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{web}api/login", json={"agent_id": "alice", "password": "alice-secret"}) as r:
            token = (await r.json())["token"]
        async with http.ws_connect(f"{web}api/ws?token={token}") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            async with SocketClient(running_box.run_dir) as client:
                assert (await client.set_password("alice", "alice-new-pw")).ok
            async with asyncio.timeout(10):
                while (msg := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                    pass  # state pushes before the close
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4003  # the close frame's code
            assert msg.extra == "your password was changed by the site admin"
        async with http.get(f"{web}api/conversations", headers={"authorization": f"Bearer {token}"}) as r:
            assert r.status == 401  # the old token no longer works


async def test_edit_and_delete_agent(running_box: RunningBox) -> None:
    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        assert (await client.put_agent(s.PutAgent("bob", "Robert Okafor", ("sales",)))).ok  # password kept
        ev = await _next(stream, s.AgentChanged, lambda e: e.agent.agent_id == "bob")
        assert (ev.agent.name, ev.agent.queues) == ("Robert Okafor", ("sales",))
        assert await _login(running_box, "bob", "bob-secret") == 200
        assert (await client.delete_agent("bob")) == s.CommandResult(True, "agent bob deleted")
        assert (await _next(stream, s.AgentRemoved)).agent_id == "bob"
        assert (await client.delete_agent("bob")).message == "no agent bob"
        await stream.aclose()
        assert [a.agent_id for a in (await client.snapshot()).agents] == ["alice"]
    assert await _login(running_box, "bob", "bob-secret") == 401
    assert [a.id for a in load_config(running_box.config_path).agents] == ["alice"]


async def test_queues_and_members(running_box: RunningBox) -> None:
    async with SocketClient(running_box.run_dir) as client:
        created = await client.put_queue(s.PutQueue("billing", "Billing", ("paid", "disputed"), 2.0, create=True))
        assert created.ok and created.message.startswith("queue billing created")
        assert not (await client.put_queue(s.PutQueue("billing", "Billing", ("paid",), create=True))).ok
        assert (await client.put_queue(s.PutQueue("billing", "Billing", ()))).message == "a queue needs at least one disposition"
        assert (await client.set_members("billing", ("alice", "bob"))).ok
        assert (await client.delete_queue("billing")).message == "queue billing still has members (alice, bob); remove them first"
        assert (await client.set_members("billing", ("zed",))).message == "unknown agent(s): zed"
        assert (await client.delete_queue("support")).message.endswith("takes the inbound calls; it cannot be deleted")
        site = await client.snapshot()
        assert {a.agent_id: a.queues for a in site.agents} == {"alice": ("support", "billing"), "bob": ("support", "sales", "billing")}
        assert (await client.set_members("billing", ())).ok
        assert (await client.delete_queue("billing")) == s.CommandResult(True, "queue billing deleted")
    cfg = load_config(running_box.config_path)
    assert [q.id for q in cfg.queues] == ["support", "sales"]
    assert {a.id: a.queues for a in cfg.agents} == {"alice": ("support",), "bob": ("support", "sales")}


async def test_line_status_commands_and_alarms(running_box: RunningBox) -> None:
    await publish_lines(running_box)
    async with SocketClient(running_box.run_dir) as client:
        site = await client.snapshot()
        gsm = next(ln for ln in site.lines if ln.line_id == "gsm0")
        assert (gsm.signal, gsm.operator, gsm.imei, gsm.firmware) == (18, "Vodafone UK", "356938035643809", "EC25EFAR06A06M4G")
        assert [p.signal for p in gsm.signal_history] == [12, 18]
        assert [(a.source, a.subject, a.message) for a in site.alarms] == [("line", "analog0", "no dial tone on the line")]
        sip = await client.line_command(s.LineCommand("sip", "ussd", text="*100#"))
        assert sip == s.CommandResult(False, "ussd is not available on line sip")
        assert (await client.line_command(s.LineCommand("sip", "test_sms"))).message == "test sms is not available on line sip"
        assert (await client.line_command(s.LineCommand("gsm0", "reset"))).message == "line gsm0 is not running on this box"
        assert (await client.line_command(s.LineCommand("sip", "reboot"))).message == "unknown line action 'reboot'"


async def test_call_search_detail_and_recordings(running_box: RunningBox, tmp_path) -> None:
    await asyncio.to_thread(seed_calls, running_box)
    async with SocketClient(running_box.run_dir) as client:
        every = await client.search_calls(s.CallQuery())
        assert [c.call_id for c in every.calls] == ["c-0003", "c-0002", "c-0001"]
        day1 = await client.search_calls(s.CallQuery(date_from="2026-06-01", date_to="2026-06-01"))
        assert {c.call_id for c in day1.calls} == {c.call_id for c in CALLS if c.arrived_at < CALLS[2].arrived_at}
        assert [c.call_id for c in (await client.search_calls(s.CallQuery(number="900002"))).calls] == ["c-0002"]
        assert [c.call_id for c in (await client.search_calls(s.CallQuery(agent_id="bob"))).calls] == ["c-0003"]
        with pytest.raises(ApiCommandError, match="date '1st June' is not YYYY-MM-DD"):
            await client.search_calls(s.CallQuery(date_from="1st June"))
        detail = await client.get_call("c-0001")
        assert detail.call.disposition == "resolved" and detail.call.wait_s == 8.0 and detail.messages == ()
        assert (await client.get_call("nope")).call is None

        recs = (await client.recordings(s.CallQuery())).recordings
        assert [(r.call_id, r.size, r.encrypted) for r in recs] == [("c-0001", 44 + 8000 * 4, False)]
        dest = tmp_path / "out.wav"
        assert (await client.export_recording("c-0001", str(dest))).ok
        src = running_box.box.store.recordings_dir() / "2026/06/01/c-0001.wav"
        assert dest.read_bytes() == src.read_bytes()
        assert "already exists" in (await client.export_recording("c-0001", str(dest))).message
        assert "absolute" in (await client.export_recording("c-0001", "out.wav")).message
        assert "give a reason" in (await client.delete_recording("c-0001", " ")).message
        assert (await client.delete_recording("c-0001", "customer asked")).ok
        assert not src.exists()
        assert (await client.recordings(s.CallQuery())).recordings == ()
        assert (await client.get_call("c-0001")).call.recording_path is None
    audits = await running_box.acall(lambda: running_box.box.store.pending("audit"))
    assert [(a["action"], a["call_id"], a.get("reason")) for a in audits] == [
        ("recording_exported", "c-0001", None), ("recording_deleted", "c-0001", "customer asked")]
    assert "uid" in audits[1]["actor"]


async def test_log_stream_sends_recent_records_then_new_ones_filtered_by_level(running_box: RunningBox) -> None:
    test_log = logging.getLogger("tests.api.logstream")
    await running_box.acall(lambda: test_log.warning("before the tail %d", 1))
    async with SocketClient(running_box.run_dir) as client:
        tail = client.logs("WARNING")
        first = await _next(tail, s.LogEntry, lambda e: e.logger == "tests.api.logstream")
        assert (first.level, first.message) == ("WARNING", "before the tail 1")
        await running_box.acall(lambda: (test_log.info("not shown"), test_log.error("after %s", "start")))
        second = await _next(tail, s.LogEntry, lambda e: e.logger == "tests.api.logstream")
        assert (second.level, second.message) == ("ERROR", "after start")
        await tail.aclose()


async def test_client_says_clearly_when_the_box_is_not_running(tmp_path) -> None:
    with pytest.raises(ApiUnavailable, match=r"^the box is not running \(no API socket at .*api.sock\)$"):
        await SocketClient(tmp_path).snapshot()
    rb = RunningBox(tmp_path).start()
    token = (rb.run_dir / "api.token").read_text()
    rb.stop()
    (rb.run_dir / "api.token").write_text(token)  # a crashed box leaves its files behind
    import socket as _socket
    stale = _socket.socket(_socket.AF_UNIX)
    stale.bind(str(rb.run_dir / "api.sock"))
    stale.close()
    with pytest.raises(ApiUnavailable, match=r"^the box is not running \(stale API socket at .*\)$"):
        await SocketClient(rb.run_dir).snapshot()


@pytest.fixture
def box_with_gsm_simulator(tmp_path):
    from tests.api.running_box import CONFIG

    (tmp_path / "branchline.toml").write_text(CONFIG.replace("gsm = false", "gsm = true"))
    rb = RunningBox(tmp_path).start()
    try:
        yield rb
    finally:
        rb.stop()


async def test_gsm_line_commands_reach_the_simulated_modem(box_with_gsm_simulator: RunningBox) -> None:
    rb = box_with_gsm_simulator
    async with SocketClient(rb.run_dir) as client:
        stream = client.events()
        lines = {ln.line_id: ln for ln in (await anext(stream)).lines}  # then follow the deltas
        async with asyncio.timeout(30):
            while not any(ln.kind == "gsm" and ln.state == "up" for ln in lines.values()):
                ev = await anext(stream)
                if isinstance(ev, s.LineChanged):
                    lines[ev.line.line_id] = ev.line
                elif isinstance(ev, s.LineRemoved):  # gsm:<port> until the modem tells its IMEI
                    del lines[ev.line_id]
        await stream.aclose()
        [line] = [ln for ln in lines.values() if ln.kind == "gsm"]
        assert line.line_id == f"gsm:{line.imei}" and line.capabilities == ("test_sms", "ussd")
        site = await client.snapshot()
        assert [ln.line_id for ln in site.lines if ln.kind == "gsm"] == [line.line_id]  # the gsm:<port> name is gone
        ussd = await client.line_command(s.LineCommand(line.line_id, "ussd", text="*100#"))
        assert ussd.ok and ussd.message.startswith(f"ussd done on {line.line_id}: ") and "Balance" in ussd.message
        sms = await client.line_command(s.LineCommand(line.line_id, "test_sms", number="+447700900123", text="hello"))
        assert sms == s.CommandResult(True, f"test sms done on {line.line_id}")
        assert (await client.line_command(s.LineCommand(line.line_id, "ussd", text="balance"))).message == "give a USSD code such as *100#"
        assert (await client.line_command(s.LineCommand(line.line_id, "reset"))).message == f"reset is not available on line {line.line_id}"


async def test_service_level_counts_todays_calls_as_they_end(running_box: RunningBox) -> None:
    import time

    from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState

    now = time.time()

    def call(call_id: str, state: LiveState, since: float) -> CallUpdate:
        return CallUpdate(LiveCallSnapshot(call_id, "sip", "sip", "+4477", None, "support", state, since, now))

    story = [call("fast", LiveState.QUEUED, now), call("fast", LiveState.ON_CALL, now + 5), call("fast", LiveState.ENDED, now + 60),
             call("slow", LiveState.QUEUED, now), call("slow", LiveState.ON_CALL, now + 45), call("slow", LiveState.ENDED, now + 90),
             call("gone", LiveState.QUEUED, now), call("gone", LiveState.ENDED, now + 10)]
    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        topic = running_box.box.hub.topic("calls")
        await running_box.acall(lambda: [topic.publish(u) for u in story])
        ev = await _next(stream, s.QueueChanged, lambda e: e.queue.offered_today == 3)
        await stream.aclose()
        q = ev.queue
        assert (q.answered_today, q.abandoned_today, q.answered_in_sl_today) == (2, 1, 1)
        assert q.service_level == pytest.approx(1 / 3)
        assert (await client.snapshot()).calls == ()  # every call ended


async def test_a_client_that_falls_behind_gets_a_fresh_snapshot(running_box: RunningBox) -> None:
    from appliance.api.feed import FANOUT_QUEUE

    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        acd = running_box.box.acd

        def burst() -> None:  # more changes in one go than a client may lag
            for _ in range(FANOUT_QUEUE):
                acd.login("alice")
                acd.logout("alice")
            acd.login("alice")

        await running_box.acall(burst)
        snap = await _next(stream, s.SiteSnapshot)
        assert next(a for a in snap.agents if a.agent_id == "alice").state == "paused"
        await stream.aclose()


async def test_messages_with_a_number(running_box: RunningBox) -> None:
    from appliance.storage import Channel

    store = running_box.box.store
    await running_box.acall(lambda: store.add_message(Channel.SMS, "in", "+447700900001", "Is my order shipped?", at=1_780_300_000.0))
    await running_box.acall(lambda: store.add_message(Channel.SMS, "out", "+447700900001", "Yes, today.", at=1_780_300_060.0))
    async with SocketClient(running_box.run_dir) as client:
        found = await client.messages("+447700900001")
        assert [(m.direction, m.body) for m in found.messages] == [("in", "Is my order shipped?"), ("out", "Yes, today.")]
        assert (await client.messages("+447700900999")).messages == ()
        with pytest.raises(ApiCommandError, match="give a phone number"):
            await client.messages(" ")
