"""Attended transfer from a real desk phone: linphonec holds the customer, calls bob through the
box, then transfers with ``transfer 1 --to-call 2`` (REFER with Replaces, RFC 5589 §7).

The box runs as its own process with extension 201 in its registrar; alice's ``phone = "201"``.
linphonec (liblinphone 5.1) is alice's desk phone: it auto-answers the queue call, ``pause``s
it (re-INVITE sendonly), calls ``sip:bob@box`` (its consult call), and once bob has answered
transfers call 1 to call 2. bob is a console agent (aiortc audio over the console API) that
counts the loud frames it hears. SIPp is the customer, playing looped speech until the box's
BYE. Checked: bob's consult offer names alice; after the transfer bob talks to the customer
(its speech reaches bob), alice's phone has no call left and alice wraps up; the REFER got
202 and NOTIFY 200; the records are alice "transferred" -> bob and bob "transferred_from"
alice; the customer call was never queued a second time.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from tests.e2e.test_queue_raw_sip import AnyWith, ConsoleAgent
from tests.e2e.test_sip_call_to_browser import free_udp_port, load_record
from tests.e2e.test_transfer import SCENARIO, looped_caller_pcap
from tests.support.box import run_sipp, running_box
from tests.support.linphone import EVENT_TIMEOUT_S, Linphonec, LinphoneSetup, running_linphonec, write_linphone_config
from tests.support.softphone import EXTENSION_201_BOTH, EXTENSION_201_PASSWORD, PHONE_TONE_HZ, write_phone_wav

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(shutil.which("linphonec") is None or shutil.which("sipp") is None,
                                                   reason="needs linphonec and sipp")]

SIPP_TIMEOUT_S = 120.0  # the looped pcap lasts 21 s; the box's BYE ends the call well before
LOUD_RMS = 300.0  # SIPp's speech peaks near -10 dBFS; aiortc's silence (and comfort frames) are 0
HEARD_FRAMES = 50  # 1 s of loud 20 ms frames: the phone's tone in the consult, the caller's speech after
TONE_BIN_HZ = 100.0  # a 20 ms frame's FFT bins are 50 Hz wide: the 600 Hz tone peaks within two bins

AGENTS = """
[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-pw"
queues = ["support"]
phone = "201"

[[agents]]
id = "bob"
name = "Bob Okafor"
password = "bob-pw"
queues = ["support"]
"""


class ListeningAgent(ConsoleAgent):
    """A console agent whose audio sorts the loud 20 ms frames it receives (what its speaker plays):
    the desk phone's 600 Hz tone, or anything else (the customer's speech)."""

    def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.tone_frames = 0
        self.other_frames = 0
        self.heard = asyncio.Condition()

    async def connect_audio(self) -> None:
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(AudioStreamTrack())
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def _changed() -> None:
            if pc.connectionState == "connected":
                connected.set()

        @pc.on("track")
        def _track(track) -> None:  # type: ignore[no-untyped-def]
            asyncio.ensure_future(self._listen(track))

        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with self.http.post(f"{self.base}/api/rtc", json=body,
                                  headers={"Authorization": f"Bearer {self.token}"}) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            await connected.wait()

    async def _listen(self, track) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                frame = await track.recv()
                channels = len(frame.layout.channels)
                samples = frame.to_ndarray().astype(np.float64).ravel()[::channels]
                if not samples.size or np.sqrt((samples ** 2).mean()) < LOUD_RMS:
                    continue
                spectrum = np.abs(np.fft.rfft(samples))
                peak = np.argmax(spectrum[1:]) + 1
                is_tone = abs(peak * frame.sample_rate / samples.size - PHONE_TONE_HZ) <= TONE_BIN_HZ
                async with self.heard:
                    if is_tone:
                        self.tone_frames += 1
                    else:
                        self.other_frames += 1
                    self.heard.notify_all()
        except MediaStreamError:
            return

    async def wait_heard(self, *, tone: int = 0, other: int = 0) -> None:
        try:
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                async with self.heard:
                    await self.heard.wait_for(lambda: self.tone_frames >= tone and self.other_frames >= other)
        except TimeoutError:
            raise AssertionError(f"bob heard {self.tone_frames} tone / {self.other_frames} other loud frames; "
                                 f"wanted {tone} / {other}") from None


async def next_all(agent: ConsoleAgent, *wanted: tuple[str, dict]) -> None:
    """Read the agent's console feed until each (type, fields) has been seen, in any order
    (ACD states and transfer notices come from different topics)."""
    missing = list(wanted)
    assert agent.ws is not None
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while missing:
            msg = await agent.ws.receive_json()
            missing = [(kind, fields) for kind, fields in missing
                       if not (msg.get("type") == kind and all(msg.get(k) == v for k, v in fields.items()))]


@dataclass
class Scene:
    box: object  # tests.support.box.BoxProcess
    setup: LinphoneSetup
    phone: Linphonec
    alice: ConsoleAgent
    bob: ListeningAgent
    sipp: asyncio.Task
    exit_code: int | None = None  # the box's, once stopped


@contextlib.asynccontextmanager
async def alice_on_a_queue_call(tmp_path: Path) -> AsyncIterator[Scene]:
    """SIPp's customer on alice's desk phone (linphonec, auto-answer); bob available on the console.
    On exit: linphonec quits, the agents log out, then the box stops (``Scene.exit_code``)."""
    phone_wav = write_phone_wav(tmp_path / "phone.wav")
    work = tmp_path / "sipp"
    (work / "pcap").mkdir(parents=True)
    looped_caller_pcap(work / "pcap" / "caller.pcap")
    shutil.copy(SCENARIO, work / SCENARIO.name)
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", agents=AGENTS,
                           sip_extra=EXTENSION_201_BOTH) as box:
        setup = write_linphone_config(tmp_path / "linphone", box_port=box.sip_udp, user="201",
                                      password=EXTENSION_201_PASSWORD)
        alice = ConsoleAgent(box.web_url, "alice", "alice-pw")
        bob = ListeningAgent(box.web_url, "bob", "bob-pw")
        try:
            await alice.login()
            await bob.login()
            await bob.connect_audio()
            async with running_linphonec(setup) as phone:
                await box.wait_for_log(r"SIP extension 201: 1 contact\(s\) registered", timeout=EVENT_TIMEOUT_S)
                await phone.wait_for("Using wav files instead of soundcard", await phone.command("soundcard use files"))
                await phone.command(f"play {phone_wav}")
                await phone.wait_for(r"[Aa]uto answer enabled", await phone.command("autoanswer enable"))
                await alice.send("device", device="phone")
                assert (await alice.next("device"))["device"] == "phone"
                await alice.go_available()

                start = phone.mark()
                sipp = asyncio.create_task(run_sipp(
                    [f"127.0.0.1:{box.sip_udp}", "-sf", SCENARIO.name, "-s", "support", "-m", "1",
                     "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                    cwd=work, timeout=SIPP_TIMEOUT_S), name="sipp")
                await alice.next("offer")
                await alice.next("state", agent=AnyWith(state="on_call"))  # linphonec picked up by itself
                await phone.wait_for(r"Call 1 with .+ connected", start)
                await bob.send("available")  # only now: the queue call had to go to alice
                await bob.next("state", agent=AnyWith(state="available"))
                scene = Scene(box, setup, phone, alice, bob, sipp)
                try:
                    yield scene
                finally:
                    if not sipp.done():
                        sipp.cancel()
                    await asyncio.wait({sipp})
        finally:
            await alice.close()
            await bob.close()
        scene.exit_code = await box.stop()


async def phone_calls_bob(scene: Scene) -> tuple[str, dict]:
    """The phone holds the customer (re-INVITE sendonly) and calls sip:bob@box; bob's console rings.
    Returns linphonec's id of the consult call and bob's offer."""
    box, phone = scene.box, scene.phone
    mark, start = len(box.logs), await phone.command("pause")
    await box.wait_for_log(r"SIP outgoing \S+: INVITE from the far end, we are now recvonly",
                           timeout=EVENT_TIMEOUT_S, start=mark)
    await phone.wait_for(r"Call 1 with .+ is now paused", start)
    # the phone's Hold key holds the customer as the console's Hold does: music, and SIPp's leg held
    await box.wait_for_log(r"SIP call \S+: hold accepted", timeout=EVENT_TIMEOUT_S, start=mark)
    bob_uri = f"sip:bob@127.0.0.1:{box.sip_udp}"
    start = await phone.command(f"call {bob_uri}")  # D2: the consult call through the box
    consult_id = (await phone.wait_for(rf"Establishing call id to {re.escape(bob_uri)}, assigned id (\d+)",
                                       start)).group(1)
    offer = await scene.bob.next("offer")
    assert offer["kind"] == "consult" and offer["from_agent"] == "alice" and offer["caller"] == "sipp", offer
    return consult_id, offer


async def test_attended_transfer_from_linphonec_to_a_console_agent(tmp_path: Path) -> None:
    async with alice_on_a_queue_call(tmp_path) as scene:
        box, phone, alice, bob = scene.box, scene.phone, scene.alice, scene.bob
        consult_id, offer = await phone_calls_bob(scene)
        start = phone.mark()
        await bob.send("answer", call_id=offer["call_id"])
        await phone.wait_for(rf"Call {consult_id} with .+ connected", start)
        await alice.next("transfer", state="consulting")
        await bob.wait_heard(tone=HEARD_FRAMES)  # the consult carries alice's phone (D2) to bob

        speech_before = bob.other_frames
        mark, start = len(box.logs), await phone.command(f"transfer 1 --to-call {consult_id}")
        await next_all(alice, ("transfer", {"state": "completed"}), ("state", {"agent": AnyWith(state="wrap_up")}))
        await phone.wait_for(r"Call 1 with .+ ended", start)
        await phone.wait_for(rf"Call {consult_id} with .+ ended", start)
        await phone.wait_for(r"No active call", await phone.command("calls"))
        await bob.wait_heard(other=speech_before + HEARD_FRAMES)  # the customer's speech reaches bob
        await alice.send("wrapup", disposition="escalated")
        await alice.next("state", agent=AnyWith(state="available"))

        await bob.send("hangup")
        code, out = await scene.sipp  # the box's BYE ends SIPp's call
        assert code == 0, out[-2000:]
        await bob.next("state", agent=AnyWith(state="wrap_up"))
        await bob.send("wrapup", disposition="resolved")
        await bob.next("state", agent=AnyWith(state="available"))
        await box.wait_for_log(r"call \S+-2 wrap-up done: disposition resolved", timeout=EVENT_TIMEOUT_S)

        box_log = "\n".join(box.logs[mark:])
        assert "agent alice transferred the call to bob from the desk phone (attended)" in box_log, box_log
        assert re.search(r"SIP call \S+: resume accepted", box_log), "the customer stayed held after the transfer"
        assert "hung up the desk phone" not in box_log  # the phone's BYEs were no agent hang-up
        assert sum(1 for line in box.logs if "-> queue support" in line) == 1, "the customer was queued twice"
        sip = scene.setup.log.read_text(errors="replace")
        assert re.search(r"^Refer-To: <sip:bob@[^>]*\?Replaces=", sip, re.M), "no REFER with Replaces"
        assert re.search(r"^SIP/2\.0 202 Accepted\r?\n(?:.+\n)*?CSeq: \d+ REFER", sip, re.M), "REFER not accepted"
        notifies = [b for b in sip.split("\nNOTIFY sip:")[1:] if "Event: refer" in b.split("\r\n\r\n", 1)[0]]
        assert len(notifies) == 2, notifies
        assert "active" in notifies[0] and "SIP/2.0 100 Trying" in notifies[0], notifies[0]
        assert "terminated" in notifies[1] and "SIP/2.0 200 OK" in notifies[1], notifies[1]  # success
        assert "481 Call/Transaction Does Not Exist" not in sip  # no crossing BYEs
    assert scene.exit_code == 0

    calls, _ = await load_record(scene.box.data_dir)
    assert len(calls) == 2, calls
    first, second = sorted(calls, key=lambda r: r.segment)
    assert (first.segment, first.agent_id, first.hangup_cause) == (1, "alice", "transferred"), first
    assert (first.transfer, first.transferred_to, first.disposition) == ("attended", "bob", "escalated"), first
    assert (second.segment, second.agent_id, second.transferred_from) == (2, "bob", "alice"), second
    assert second.parent_call_id == first.call_id and second.disposition == "resolved", second
    assert second.hangup_cause == "agent hung up" and second.talk_s > 0, second


async def test_a_declined_consult_gives_the_phone_603_and_alice_keeps_the_customer(tmp_path: Path) -> None:
    async with alice_on_a_queue_call(tmp_path) as scene:
        box, phone, alice, bob = scene.box, scene.phone, scene.alice, scene.bob
        consult_id, offer = await phone_calls_bob(scene)
        start = phone.mark()
        await bob.send("reject", call_id=offer["call_id"])
        await phone.wait_for(rf"Call {consult_id} with .+ (?:declined|error|ended)", start)
        await box.wait_for_log(r"transfer: \S+ -> talking \(retrieved\)", timeout=EVENT_TIMEOUT_S)
        start = await phone.command("resume 1")  # alice takes the customer off hold ...
        await phone.wait_for(r"Media streams established with .+ for call 1 \(audio\)", start)
        start = await phone.command("terminate 1")  # ... and ends the call
        await phone.wait_for(r"Call 1 with .+ ended", start)
        code, out = await scene.sipp  # the customer gets the box's BYE
        assert code == 0, out[-2000:]
        await alice.next("state", agent=AnyWith(state="wrap_up"))
        await alice.send("wrapup", disposition="resolved")
        await box.wait_for_log(r"wrap-up done: disposition resolved", timeout=EVENT_TIMEOUT_S)
        await bob.next("state", agent=AnyWith(state="available"))  # the declined consult left bob free
        sip = scene.setup.log.read_text(errors="replace")
        assert re.search(r"^SIP/2\.0 603 Decline\r?\n(?:.+\n)*?CSeq: \d+ INVITE", sip, re.M), "no 603 to the consult"
        assert "REFER sip:" not in sip
    assert scene.exit_code == 0

    calls, _ = await load_record(scene.box.data_dir)
    assert len(calls) == 1, calls
    (rec,) = calls
    assert (rec.agent_id, rec.hangup_cause, rec.transferred_to) == ("alice", "agent hung up", None), rec
