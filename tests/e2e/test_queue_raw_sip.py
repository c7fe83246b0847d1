"""Queue behaviour seen from raw SIP: CANCEL while offered, and abandon while queued.

The agent is a real WebRTC peer (aiortc as the browser would be) logged in over the
console's HTTP and WebSocket API; the caller is hand-built SIP over UDP.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from tests.support.box import running_box
from tests.support.sip_raw import RawCaller, to_tag

WS_TIMEOUT_S = 10.0


class AnyWith(dict):
    """Equal to any dict holding these items: ``agent.next("state", agent=AnyWith(state="available"))``."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and all(other.get(k) == v for k, v in self.items())

    __hash__ = None  # type: ignore[assignment]


class ConsoleAgent:
    """An agent using the console API the way the page does."""

    def __init__(self, web_url: str, agent: str, password: str) -> None:
        self.base = web_url.rstrip("/")
        self.agent, self.password = agent, password
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.token = ""

    async def login(self) -> None:
        async with self.http.post(f"{self.base}/api/login", json={"agent_id": self.agent, "password": self.password}) as r:
            assert r.status == 200, await r.text()
            self.token = (await r.json())["token"]
        self.ws = await self.http.ws_connect(f"{self.base}/api/ws?token={self.token}")
        self.hello = await self.next("hello")
        assert self.hello["agent"]["state"] == "paused"

    async def connect_audio(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(AudioStreamTrack())
        connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def _changed() -> None:
            if self.pc.connectionState == "connected":
                connected.set()

        @self.pc.on("track")
        def _track(track) -> None:
            async def drain() -> None:
                with contextlib.suppress(MediaStreamError):  # the call's audio ended (close)
                    while True:
                        await track.recv()

            asyncio.ensure_future(drain())

        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        async with self.http.post(f"{self.base}/api/rtc", json=body, headers={"Authorization": f"Bearer {self.token}"}) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(**answer))
        async with asyncio.timeout(WS_TIMEOUT_S):
            await connected.wait()

    async def go_available(self) -> None:
        """Available, once the box says so (a call placed before could find the agent paused)."""
        await self.send("available")
        await self.next("state", agent=AnyWith(state="available"))

    async def send(self, op: str, **kw) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"op": op, **kw}))

    async def next(self, kind: str, *, timeout_s: float = WS_TIMEOUT_S, **match) -> dict:
        assert self.ws is not None
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await self.ws.receive_json()
                if msg.get("type") == kind and all(msg.get(k) == v for k, v in match.items()):
                    return msg

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.pc is not None:
            await self.pc.close()
        await self.http.close()


async def stored_calls(data_dir: Path):
    from appliance.storage import Store

    store = await Store.open(data_dir)
    try:
        return await store.recent_calls(10)
    finally:
        await store.close()


async def test_cancel_while_offered_gives_200_487_and_withdraws_the_offer(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        caller = await RawCaller(box.sip_udp).open()
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.go_available()
            caller.send(caller.invite_bytes())
            await caller.expect(100, "INVITE")
            offer = await agent.next("offer")
            assert offer["caller"] == "+441632960001" and offer["caller_name"] == "Test Caller"
            caller.send(caller.cancel_bytes())
            await caller.expect(200, "CANCEL")
            final = await caller.expect(487, "INVITE")
            caller.send(caller.ack_bytes(to_tag(final)))
            ended = await agent.next("offer_ended", call_id=offer["call_id"])
            assert ended["reason"] == "caller hung up"
            # no zombie: answering the withdrawn offer is refused, the agent is available again
            await agent.send("answer", call_id=offer["call_id"])
            err = await agent.next("error")
            assert "no longer offered" in err["message"]
        finally:
            caller.close()
            await agent.close()
        assert await box.stop() == 0
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.outcome == "abandoned" and rec.hangup_cause == "cancelled"
    assert rec.offers == ("alice",) and rec.recording_path is None and rec.answered_at is None


async def test_caller_hanging_up_while_queued_is_recorded_as_abandoned(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "bob", "bob-pw")  # logged in but paused: the call queues
        caller = await RawCaller(box.sip_udp, user="+441632960002").open()
        try:
            await agent.login()
            caller.send(caller.invite_bytes())
            await caller.expect(180, "INVITE")
            await box.wait_for_log(r"call \S+ from \+441632960002 .* -> queue support")
            caller.send(caller.cancel_bytes())
            await caller.expect(200, "CANCEL")
            final = await caller.expect(487, "INVITE")
            caller.send(caller.ack_bytes(to_tag(final)))
            await box.wait_for_log(r"abandoned after [\d.]+s in queue")
        finally:
            caller.close()
            await agent.close()
        assert await box.stop() == 0
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.outcome == "abandoned" and rec.from_number == "+441632960002"
    assert rec.wait_s is not None and rec.wait_s >= 0 and rec.enqueued_at is not None
    assert rec.agent_id is None and rec.recording_path is None
    assert not list((box.data_dir).rglob("*.wav"))


async def test_repeat_caller_offer_carries_customer_and_history(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.go_available()
            for attempt in range(2):
                caller = await RawCaller(box.sip_udp, user="+441632960003").open()
                try:
                    caller.send(caller.invite_bytes())
                    offer = await agent.next("offer")
                    caller.send(caller.cancel_bytes())
                    caller.send(caller.ack_bytes(to_tag(await caller.expect(487, "INVITE"))))
                    await agent.next("offer_ended", call_id=offer["call_id"])
                finally:
                    caller.close()
                assert offer["customer_id"]
                if attempt == 0:
                    first_customer = offer["customer_id"]
                    assert offer["history"] == []
                    assert offer["customer_name"] == "Test Caller"
                    await box.wait_for_log(r"abandoned after")
            assert offer["customer_id"] == first_customer
            assert len(offer["history"]) == 1 and offer["history"][0]["kind"] == "call"
            assert "abandoned" in offer["history"][0]["summary"]
        finally:
            await agent.close()
