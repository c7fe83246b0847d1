"""End to end with a real SIP phone: baresip registers, calls, holds, resumes and hangs up; the agent
holds and resumes it from the console and sends it a key.

The box runs as its own process (``run.py``) with extension 201 in its registrar. baresip
(Debian's v1.0) registers as 201 with digest, dials ``support``; a headless Chromium agent
answers. baresip plays a 600 Hz WAV through its ``aufile`` source and dumps what it hears
with ``sndfile``; it is driven over its ``ctrl_tcp`` JSON interface (netstrings).

Interop fact found here: baresip 1.0's digest code (libre) gives up ("Function not
implemented") when any challenge names an algorithm other than MD5, so this box offers
MD5 only (``auth_algorithms = ["MD5"]``); the default SHA-256+MD5 pair locks such phones out.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import wave
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest

from tests.e2e.test_sip_call_to_browser import login, loud_seconds, peak_hz
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav
from tests.support.softphone import (  # noqa: F401  (free_tcp_port, write_phone_wav: used by test_baresip_tls)
    AGENT_TONE_HZ,
    EXTENSION_201,
    TALK_S,
    agent_hears_the_phone,
    answer_offer,
    assert_answered_call_recorded,
    finish_wrapup,
    free_tcp_port,
    write_phone_wav,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(shutil.which("baresip") is None, reason="no baresip")]

BARESIP_READY_S = 15.0  # baresip loads its modules and is ready in well under a second
EVENT_TIMEOUT_S = 20.0  # registration/call events arrive in ms on loopback; generous for a loaded box
BARESIP_LIFETIME_S = 180  # -t: baresip quits on its own even if the test dies
CONSOLE_LINE_LIMIT = 1 << 20  # the status line repeats with CR only (~400 B/s): one "line" grows for minutes
CONSOLE_MAX_LINES = 5000  # one call's SIP trace is ~500 lines


def free_sip_port() -> int:
    """A port P free for UDP and TCP, with P+1 free for TCP (baresip's own TLS listener)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with contextlib.ExitStack() as stack:
                for kind, p in ((socket.SOCK_DGRAM, port), (socket.SOCK_STREAM, port), (socket.SOCK_STREAM, port + 1)):
                    s = stack.enter_context(socket.socket(socket.AF_INET, kind))
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair for baresip")


def write_baresip_config(folder: Path, *, box_port: int, wav: Path, sip_port: int, ctrl_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_text(
        "poll_method epoll\n"
        f"sip_listen 127.0.0.1:{sip_port}\n"
        "net_interface 127.0.0.1\n"  # 'lo' cannot be resolved here (no ioctl); the address works
        "audio_player aubridge,nowhere\n"  # no sound card: a bridge device nobody reads
        f"audio_source aufile,{wav}\n"
        "audio_alert aubridge,nowhere\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\n"
        "module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n"
        f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n"
        f"snd_path {folder}\n"
    )
    (folder / "accounts").write_text(
        f"<sip:201@127.0.0.1:{box_port}>;auth_pass=secret;regint=600;audio_codecs=PCMU,PCMA\n")
    return folder


class Baresip:
    """A running baresip and its ctrl_tcp connection: commands out, JSON responses and events in.

    Every message read is kept; a wait takes the first message not yet taken that matches,
    so an event arriving before a command's response (CALL_CLOSED before "hangup" ok) is not lost.
    """

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, output: list[str]) -> None:
        self.proc, self.reader, self.writer = proc, reader, writer
        self.output = output  # its console, with the SIP trace (-s)
        self.messages: list[dict] = []
        self._taken: set[int] = set()

    async def command(self, name: str, params: str = "") -> dict:
        body = json.dumps({"command": name, "params": params, "token": name}).encode()
        self.writer.write(str(len(body)).encode() + b":" + body + b",")
        response = await self.wait(lambda m: m.get("response") and m.get("token") == name)
        assert response["ok"], response
        return response

    async def _read(self) -> None:
        length = int((await self.reader.readuntil(b":"))[:-1])
        data = await self.reader.readexactly(length + 1)
        self.messages.append(json.loads(data[:-1]))

    async def wait(self, match, timeout: float = EVENT_TIMEOUT_S) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for index, message in enumerate(self.messages):
                    if index not in self._taken and match(message):
                        self._taken.add(index)
                        return message
                await self._read()

    async def event(self, kind: str) -> dict:
        return await self.wait(lambda m: m.get("event") and m.get("type") == kind)


@contextlib.asynccontextmanager
async def running_baresip(conf: Path, ctrl_port: int) -> AsyncIterator[Baresip]:
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-4", "-s", "-f", str(conf), "-t", str(BARESIP_LIFETIME_S),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        limit=CONSOLE_LINE_LIMIT)
    output: list[str] = []
    try:
        async with asyncio.timeout(BARESIP_READY_S):
            while True:
                line = (await proc.stdout.readline()).decode(errors="replace")
                assert line, f"baresip exited early: {''.join(output)}"
                output.append(line)
                if "baresip is ready" in line:
                    break
        drain = asyncio.create_task(_drain(proc.stdout, output), name="baresip-stdout")
        reader, writer = await asyncio.open_connection("127.0.0.1", ctrl_port)
        try:
            yield Baresip(proc, reader, writer, output)
        finally:
            writer.close()
            drain.cancel()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        if len(into) < CONSOLE_MAX_LINES:
            into.append(line.decode(errors="replace"))


def invite_answers(console: str) -> list[tuple[int, str]]:
    """(CSeq, a= direction) of each 200 OK to an INVITE in baresip's SIP trace, in order, once per CSeq."""
    found: dict[int, str] = {}
    for block in console.split("\x1b[36;1m#")[1:]:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if len(lines) < 2 or lines[1] != "SIP/2.0 200 OK":  # lines[0]: "UDP a -> b"
            continue
        cseq = next((line.split()[1:] for line in lines if line.startswith("CSeq:")), [])
        if cseq[1:] == ["INVITE"]:
            direction = next((line[2:] for line in lines if line in
                              ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")), "sendrecv")
            found.setdefault(int(cseq[0]), direction)
    return list(found.items())


async def test_baresip_registers_calls_holds_resumes_and_hangs_up(tmp_path: Path) -> None:
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    phone_wav = write_phone_wav(tmp_path / "phone.wav")
    ctrl_port = free_tcp_port()
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", sip_extra=EXTENSION_201) as box:
        conf = write_baresip_config(tmp_path / "baresip", box_port=box.sip_udp, wav=phone_wav,
                                    sip_port=free_sip_port(), ctrl_port=ctrl_port)
        async with launch_chromium(fake_audio_wav=mic) as browser:
            page = await browser.new_page()
            await login(page, box.web_url, "alice", "alice-pw")
            async with running_baresip(conf, ctrl_port) as phone:
                await box.wait_for_log(r"SIP extension 201: 1 contact\(s\) registered", timeout=EVENT_TIMEOUT_S)
                await phone.command("dial", f"sip:support@127.0.0.1:{box.sip_udp}")
                await answer_offer(page, "201")
                await phone.event("CALL_ESTABLISHED")
                await agent_hears_the_phone(page)

                mark = len(box.logs)
                await phone.command("hold")  # re-INVITE with a=sendonly
                await box.wait_for_log(r"INVITE from the caller, we are now recvonly", timeout=EVENT_TIMEOUT_S,
                                       start=mark)
                await phone.event("CALL_REMOTE_SDP")
                mark = len(box.logs)
                await phone.command("resume")  # re-INVITE with a=sendrecv
                await box.wait_for_log(r"INVITE from the caller, we are now sendrecv", timeout=EVENT_TIMEOUT_S,
                                       start=mark)
                await phone.event("CALL_REMOTE_SDP")
                await agent_hears_the_phone(page)  # the call carries audio again after the resume

                # now the agent holds the caller from the console: our re-INVITE with a=sendonly
                mark = len(box.logs)
                await page.click("#btn-hold")
                await box.wait_for_log(r"SIP call \S+: hold accepted", timeout=EVENT_TIMEOUT_S, start=mark)
                await page.wait_for_selector("#call-held", state="visible", timeout=EVENT_TIMEOUT_S * 1000)
                mark = len(box.logs)
                await page.click("#btn-hold")  # now labelled Resume
                await box.wait_for_log(r"SIP call \S+: resume accepted", timeout=EVENT_TIMEOUT_S, start=mark)
                await page.wait_for_selector("#call-held", state="hidden", timeout=EVENT_TIMEOUT_S * 1000)
                await page.click("#keypad button[data-key='5']")  # RFC 4733 to the phone
                dtmf = await phone.event("CALL_DTMF_START")  # baresip decoded our RFC 4733 event
                assert dtmf.get("param") == "5", dtmf
                await page.wait_for_function("bl.events.some((e) => e.type === 'keys_sent' && e.digits === '5')",
                                             timeout=EVENT_TIMEOUT_S * 1000)
                await agent_hears_the_phone(page)
                await phone.command("hangup")
                closed = await phone.event("CALL_CLOSED")
                assert closed["peeruri"] == f"sip:support@127.0.0.1:{box.sip_udp}"
                answers = invite_answers("".join(phone.output))
                # initial INVITE, the phone's hold (we answer recvonly to its sendonly) and resume, then
                # the agent's hold (the phone answers recvonly to our sendonly) and resume (sendrecv)
                assert [direction for _, direction in answers] == ["sendrecv", "recvonly", "sendrecv",
                                                                    "recvonly", "sendrecv"], answers


            await finish_wrapup(page, box)
        assert await box.stop() == 0

    await assert_answered_call_recorded(box.data_dir)

    # what baresip decoded from the box; sndfile opens new dumps when the stream restarts (resume) and
    # names them by the second, so a dump may be overwritten: what remains covers at least the resumed talk
    heard = []
    for path in sorted((tmp_path / "baresip").glob("dump-*-dec.wav")):
        with wave.open(str(path)) as w:
            heard.append((w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")))
    assert heard
    rate, longest = max(heard, key=lambda item: len(item[1]))
    assert abs(peak_hz(longest, rate) - AGENT_TONE_HZ) <= 20  # the agent's voice reached the phone
    assert sum(loud_seconds(samples, r) for r, samples in heard) > 0.8 * TALK_S
