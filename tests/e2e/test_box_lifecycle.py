"""The box as an operator meets it: it answers OPTIONS, survives bad SIP, and stops cleanly."""
from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.e2e.test_queue_raw_sip import ConsoleAgent, stored_calls
from tests.support.box import ROOT, START_TIMEOUT_S, running_box, write_config
from tests.support.sip_raw import RawCaller, to_tag


async def answered_call(agent: ConsoleAgent, caller: RawCaller) -> None:
    """The agent logs in with audio and goes available; the caller dials; the agent answers."""
    await agent.login()
    await agent.connect_audio()
    await agent.go_available()
    caller.send(caller.invite_bytes())
    offer = await agent.next("offer")
    await agent.send("answer", call_id=offer["call_id"])
    caller.send(caller.ack_bytes(to_tag(await caller.expect(200, "INVITE"))))
    await agent.next("call", state="on_call")


def options_bytes(c: RawCaller) -> bytes:
    return (
        f"OPTIONS sip:support@127.0.0.1:{c.box_port} SIP/2.0\r\n"
        + c._headers("OPTIONS", 1, "z9hG4bK-opt-" + c.tag)
        + "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_box_answers_options_and_keeps_running_after_malformed_requests(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        c = await RawCaller(box.sip_udp).open()
        try:
            c.send(options_bytes(c))
            ok = await c.expect(200, "OPTIONS")
            assert "INVITE" in ok and "Allow:" in ok
            bad_cseq = options_bytes(c).replace(b"CSeq: 1 OPTIONS", b"CSeq: abc OPTIONS")
            c.send(bad_cseq)
            assert "bad CSeq" in await c.expect(400, None)  # the CSeq cannot be echoed: it is the fault
            bad_sdp = c.invite_bytes().replace(b"m=audio 40000 RTP/AVP 0 101", b"m=audio banana")
            c.send(bad_sdp)
            await c.expect(400, "INVITE")
            c.send(b"\x00\xff garbage that is not SIP at all\r\n\r\n")
            c.branch += "x"
            c.send(options_bytes(c))
            await c.expect(200, "OPTIONS")
        finally:
            c.close()
        assert box.proc.returncode is None
        assert not any("Traceback" in line for line in box.logs)


async def test_retransmitted_invite_makes_one_call(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "bob", "bob-pw")
        c = await RawCaller(box.sip_udp).open()
        try:
            await agent.login()
            invite = c.invite_bytes()
            c.send(invite)
            await c.expect(180, "INVITE")
            c.send(invite)  # same branch: absorbed, the last response is repeated
            await c.expect(180, "INVITE")
            c.send(c.cancel_bytes())
            await c.expect(200, "CANCEL")
            c.send(c.ack_bytes(to_tag(await c.expect(487, "INVITE"))))
            await box.wait_for_log(r"abandoned after")
        finally:
            c.close()
            await agent.close()
        assert await box.stop() == 0
    assert sum("-> queue support" in line for line in box.logs) == 1
    assert len(await stored_calls(box.data_dir)) == 1


async def test_sigterm_ends_live_call_and_finalises_recording(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        c = await RawCaller(box.sip_udp).open()
        try:
            await answered_call(agent, c)
            assert await box.stop() == 0
            bye = await c.expect_request("BYE")
            assert "Call-ID: " + c.call_id in bye
        finally:
            c.close()
            await agent.close()
    assert any("shutting down" in line for line in box.logs)
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1 and calls[0].hangup_cause == "box shutting down"
    wavs = list(box.data_dir.rglob("*.wav"))
    assert len(wavs) == 1 and not list(box.data_dir.rglob("*.open"))
    with wave.open(str(wavs[0])) as w:
        assert w.getnchannels() == 2 and w.getnframes() > 0
        assert w.getnframes() * 4 + 44 == wavs[0].stat().st_size


async def test_agent_audio_drop_holds_caller_and_reconnect_resumes_the_call(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        c = await RawCaller(box.sip_udp).open()
        try:
            await answered_call(agent, c)
            mark = len(box.logs)
            await agent.pc.close()  # the browser's audio path dies mid-call
            await box.wait_for_log(r"agent alice lost audio; caller on hold", start=mark)
            await agent.connect_audio()  # the console reconnects its audio
            await box.wait_for_log(r"agent alice audio reconnected", start=mark)
            await agent.send("hangup")
            bye = await c.expect_request("BYE")
            assert "Call-ID: " + c.call_id in bye
            await agent.next("call", state="ended")
        finally:
            c.close()
            await agent.close()
        assert await box.stop() == 0
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1 and calls[0].outcome == "answered" and calls[0].hangup_cause == "agent hung up"


async def test_agent_who_never_reconnects_ends_the_call(tmp_path: Path) -> None:
    async with running_box(tmp_path, extra_config="[acd]\nagent_reconnect_s = 2.0\n") as box:
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        c = await RawCaller(box.sip_udp).open()
        try:
            await answered_call(agent, c)
            await agent.pc.close()
            bye = await c.expect_request("BYE", timeout=15)
            assert "Call-ID: " + c.call_id in bye
            await box.wait_for_log(r"agent alice did not reconnect; ending the call")
        finally:
            c.close()
            await agent.close()


def held_port(kind: int) -> socket.socket:
    """A socket holding an ephemeral loopback port, the way another program would."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


def failed_start(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``run.py --config cfg args`` that is expected to give up at start."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(cfg), *args], check=False,
                          capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=cfg.parent)


# what holds the port, how the box is told to use it, and what the operator is told to change
BIND_CASES = {
    "sip-udp": (socket.SOCK_DGRAM, "", ["--sip-port", "{port}"], "SIP over UDP", "--sip-port or [sip] port"),
    "sip-tcp": (socket.SOCK_STREAM, "", ["--sip-port", "{port}"], "SIP over TCP", "--sip-port or [sip] port"),
    "sip-tls": (socket.SOCK_STREAM, 'transports = ["udp", "tcp", "tls"]\ntls_port = {port}', [], "SIP over TLS",
                "[sip] tls_port"),
    "web": (socket.SOCK_STREAM, "", ["--web-port", "{port}"], "agent console", "--web-port or [web] port"),
}


@pytest.mark.parametrize("case", BIND_CASES)
def test_a_taken_port_is_named_with_the_setting_to_change(tmp_path: Path, case: str) -> None:
    kind, sip_extra, args, what, change = BIND_CASES[case]
    with held_port(kind) as blocker:
        port = blocker.getsockname()[1]
        cfg = write_config(tmp_path, sip_extra=sip_extra.format(port=port))
        proc = failed_start(cfg, *(a.format(port=port) for a in args))
    assert proc.returncode == 1, proc.stderr
    assert f"cannot start: {what} cannot listen on 127.0.0.1:{port}: address already in use" in proc.stderr
    assert f"holds port {port}: stop it, or pick another port with {change}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # this start created the data folder and stored nothing in it


def test_a_failed_start_keeps_a_data_folder_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with held_port(socket.SOCK_DGRAM) as blocker:
        port = blocker.getsockname()[1]
        proc = failed_start(write_config(tmp_path), "serve", "--sip-port", str(port))
    assert proc.returncode == 1 and "SIP over UDP cannot listen" in proc.stderr
    assert (tmp_path / "data" / "meta.json").exists()


async def test_banner_prints_a_tui_command_that_runs_with_the_box_config(tmp_path: Path) -> None:
    async with running_box(tmp_path) as box:
        m = await box.wait_for_log(r"Admin TUI:\s+(.*)$")
    words = shlex.split(m.group(1))
    assert words[2:] == ["tui", "--config", str(tmp_path / "branchline.toml")]
    in_venv = Path(sys.executable).parent.resolve().is_relative_to((ROOT / ".venv").resolve())
    assert words[0] == (sys.executable if in_venv else "python3")  # the .venv one under make test
    proc = await asyncio.create_subprocess_exec(*words, "--help", cwd=tmp_path, stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(START_TIMEOUT_S):
        out, _ = await proc.communicate()
    assert proc.returncode == 0 and "usage: run.py tui" in out.decode()
