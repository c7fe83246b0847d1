"""SIP over TLS against a real phone: baresip registers with digest and calls over TLS.

SIPp here is built without OpenSSL (``-t l1``: "To use a TLS transport you must compile
SIPp with OpenSSL"), so baresip is the real TLS peer. It verifies the line's self-signed
certificate (``sip_cafile``), registers as 201 (MD5: see tests/e2e/test_baresip.py), calls,
the line answers and sends audio, then baresip hangs up; everything on one TLS connection.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from appliance.lines import HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.tls import CERT_FILE
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


async def test_baresip_registers_and_calls_over_tls(tmp_path: Path) -> None:
    calls: asyncio.Queue = asyncio.Queue(maxsize=2)

    async def handler(call) -> None:
        calls.put_nowait(call)
        await call.answer()
        for _ in range(AUDIO_FRAMES):
            call.audio.write_frame(b"\x00\x20" * 160)
        await call.wait_ended()

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
        (conf / "config").write_text((conf / "config").read_text()
                                     + f"sip_cafile {tmp_path / 'tls' / CERT_FILE}\n")  # verify our certificate
        (conf / "accounts").write_text(f"<sip:201@127.0.0.1:{line.tls_port};transport=tls>;auth_pass=secret;"
                                       "regint=600;audio_codecs=PCMU\n")
        async with running_baresip(conf, ctrl_port) as phone:
            async with asyncio.timeout(WAIT_S):
                await registered.event.wait()
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
    finally:
        line_log.removeHandler(registered)
        line_log.setLevel(old_level)
        await line.stop()
