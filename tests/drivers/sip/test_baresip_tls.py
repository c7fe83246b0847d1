"""SIP over TLS against a real phone: baresip registers with digest and calls over TLS.

SIPp here is built without OpenSSL (``-t l1``: "To use a TLS transport you must compile
SIPp with OpenSSL"), so baresip is the real TLS peer. It verifies the line's self-signed
certificate (``sip_cafile``), registers as 201 (MD5: see tests/e2e/test_baresip.py), calls,
the line answers and sends audio, then baresip hangs up; everything on one TLS connection.
With ``mediaenc=srtp-mand`` the phone offers RTP/SAVP with SDES keys and both directions of
audio are SRTP.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

import pytest

from appliance.lines import HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.tls import CERT_FILE
from media.frames import FRAME_S
from media.tones import tone
from tests.media.audio_asserts import peak_hz, samples
from tests.support.softphone import AGENT_TONE_HZ, PHONE_TONE_HZ
from tests.e2e.test_baresip import (
    free_sip_port,
    free_tcp_port,
    running_baresip,
    write_baresip_config,
    write_phone_wav,
)

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="no baresip")

WAIT_S = 15.0  # loopback TLS handshakes and answers take ms; generous for a loaded 2-core box
AUDIO_FRAMES = 25  # 0.5 s of our audio towards the phone


class _Registered(logging.Handler):
    """Sets an event when the line logs that extension 201 registered."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("SIP extension 201: 1 contact(s) registered"):
            self.event.set()


@asynccontextmanager
async def _tls_line_and_phone(tmp_path: Path, handler, account_params: str = "") -> AsyncIterator[tuple]:
    """A TLS SIP line with user 201 and a baresip registered to it over TLS (verifying our
    self-signed certificate); ``account_params`` are added to its account line."""
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tls=True, tls_port=0,
                                 tls_dir=str(tmp_path / "tls"), users=(("201", "secret"),),
                                 auth_algorithms=("MD5",)), handler)
    registered = _Registered()
    line_log = logging.getLogger("drivers.sip.line")
    old_level = line_log.level
    line_log.setLevel(logging.INFO)  # the INFO record must reach our handler whatever the root level
    line_log.addHandler(registered)
    await line.start()
    try:
        ctrl_port = free_tcp_port()
        conf = write_baresip_config(tmp_path / "baresip", box_port=line.tls_port, wav=write_phone_wav(
            tmp_path / "phone.wav", seconds=10.0), sip_port=free_sip_port(), ctrl_port=ctrl_port)
        (conf / "config").write_text((conf / "config").read_text() + "module srtp.so\n"
                                     + f"sip_cafile {tmp_path / 'tls' / CERT_FILE}\n")  # verify our certificate
        (conf / "accounts").write_text(f"<sip:201@127.0.0.1:{line.tls_port};transport=tls>;auth_pass=secret;"
                                       f"regint=600;audio_codecs=PCMU{account_params}\n")
        async with running_baresip(conf, ctrl_port) as phone:
            async with asyncio.timeout(WAIT_S):
                await registered.event.wait()
            yield line, phone
    finally:
        line_log.removeHandler(registered)
        line_log.setLevel(old_level)
        await line.stop()


async def test_baresip_registers_and_calls_over_tls(tmp_path: Path) -> None:
    calls: asyncio.Queue = asyncio.Queue(maxsize=2)

    async def handler(call) -> None:
        calls.put_nowait(call)
        await call.answer()
        for _ in range(AUDIO_FRAMES):
            call.audio.write_frame(b"\x00\x20" * 160)
        await call.wait_ended()

    async with _tls_line_and_phone(tmp_path, handler) as (line, phone):
        [binding] = line.bindings("201")
        assert binding.transport == "tls" and binding.contact.endswith(";transport=tls")
        await phone.command("dial", f"sip:support@127.0.0.1:{line.tls_port};transport=tls")
        async with asyncio.timeout(WAIT_S):
            call = await calls.get()
        await phone.event("CALL_ESTABLISHED")
        await phone.command("hangup")
        await phone.event("CALL_CLOSED")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP
        console = "".join(phone.output)
    assert call.caller.number == "201"
    stats = call.audio.statistics()
    assert stats.sent >= AUDIO_FRAMES - 1  # our audio went out (RTP is UDP; signalling was TLS)
    tls_in = f"TLS 127.0.0.1:{line.tls_port} -> "
    assert console.count(tls_in) >= 4  # 401, 200 (REGISTER), 100/200 (INVITE), 200 (BYE) all over TLS
    assert f"UDP 127.0.0.1:{line.udp_port} ->" not in console


SRTP_HEARD_FRAMES = 75  # 1.5 s of the phone's tone received, decrypted and decoded


async def test_baresip_with_mandatory_srtp_talks_srtp_both_ways(tmp_path: Path) -> None:
    calls: asyncio.Queue = asyncio.Queue(maxsize=2)
    heard: list[bytes] = []

    async def handler(call) -> None:  # plays the agent's tone at the real pace, keeps what it hears
        calls.put_nowait(call)
        await call.answer()
        ended = asyncio.ensure_future(call.wait_ended())
        try:
            agent = tone(AGENT_TONE_HZ, level_dbfs=-12.0)
            while True:
                while (got := call.audio.read_frame_nowait()) is not None:
                    heard.append(got)
                call.audio.write_frame(agent.next_frame())
                await asyncio.wait({ended}, timeout=FRAME_S)
                if ended.done():
                    return
        finally:
            ended.cancel()

    async with _tls_line_and_phone(tmp_path, handler, ";mediaenc=srtp-mand") as (line, phone):
        await phone.command("dial", f"sip:support@127.0.0.1:{line.tls_port};transport=tls")
        async with asyncio.timeout(WAIT_S):
            call = await calls.get()
        await phone.event("CALL_ESTABLISHED")
        async with asyncio.timeout(WAIT_S):
            while len(heard) < SRTP_HEARD_FRAMES:
                await asyncio.sleep(FRAME_S)  # bounded poll of frames the call task collects
        # our hold and resume re-offers carry our key again; the phone's answers bring its key
        async with asyncio.timeout(WAIT_S):
            assert await call.hold() and await call.resume()
        resumed_at = len(heard)
        async with asyncio.timeout(WAIT_S):
            while len(heard) < resumed_at + SRTP_HEARD_FRAMES // 3:
                await asyncio.sleep(FRAME_S)
        await phone.command("hangup")
        await phone.event("CALL_CLOSED")
        async with asyncio.timeout(WAIT_S):
            assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP
        console = "".join(phone.output)
    assert "RTP/SAVP" in console and console.count("a=crypto:") >= 6  # offers and answers (SIP trace)
    assert "a=sendonly" in console  # our hold re-offer reached it
    stats = call.audio.statistics()
    assert stats.srtp_failed == 0 and stats.dropped_pt == 0 and stats.received >= SRTP_HEARD_FRAMES
    assert abs(peak_hz(samples(b"".join(heard[resumed_at:]))) - PHONE_TONE_HZ) <= 20  # after the resume
    phone_audio = samples(b"".join(heard[10:]))  # past the start of the stream
    assert abs(peak_hz(phone_audio) - PHONE_TONE_HZ) <= 20
    assert np.sqrt(np.mean(phone_audio.astype(float) ** 2)) > 1000
    dumps = sorted((tmp_path / "baresip").glob("dump-*-dec.wav"))  # what baresip decrypted from us
    assert dumps
    with wave.open(str(dumps[-1])) as w:
        rate, ours = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(ours) > rate and abs(peak_hz(ours[rate // 2:], rate) - AGENT_TONE_HZ) <= 20
