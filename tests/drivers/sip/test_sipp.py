"""Real SIPp calls against a running SipLine on 127.0.0.1."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from appliance.lines import HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from media.frames import FRAME_S
from tests.drivers.sip.pcap import pcmu_tone, write_rtp_pcap
from tests.media.audio_asserts import peak_hz, samples

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]

SIPP_TIMEOUT_S = 40.0  # the uac_pcap call lasts ~9.5 s (8 s audio pause + 1 s DTMF pause)
CALL_END_WAIT_S = 5.0
SIPP_PCAP_DIR = Path("/usr/share/sip-tester")
SCENARIO_DIR = Path(__file__).parents[2] / "data" / "sipp"
G711A_SECONDS = 7.05  # /usr/share/sip-tester/g711a.pcap: 235 packets of 30 ms
SILENCE_RMS = 4.0  # below this a frame is digital silence; the quietest A-law code decodes to +-8
SPEECH_RMS = 50.0  # clearly audible content (g711a.pcap: 6.48 s above this after 0.6 s of idle code)


def _free_port(even_pair: bool = False) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not even_pair:
            return port
        if port % 2 == 0 and port < 65000:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    a.bind(("127.0.0.1", port + 1))
                    b.bind(("127.0.0.1", port + 2))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class Collector:
    """Plays the bridge: every 20 ms drains the call's audio and sends a frame back."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.digits: list[str] = []
        self.cause: HangupCause | None = None
        self.done = asyncio.Event()
        self.call = None

    async def __call__(self, call) -> None:
        self.call = call
        call.on_dtmf(self.digits.append)
        await call.progress()
        await call.answer()
        ended = asyncio.ensure_future(call.wait_ended())
        tone = (b"\x00\x10" * 160)
        try:
            while not ended.done():
                while (frame := call.audio.read_frame_nowait()) is not None:
                    self.frames.append(frame)
                call.audio.write_frame(tone)
                await asyncio.wait({ended}, timeout=FRAME_S)
            while (frame := call.audio.read_frame_nowait()) is not None:
                self.frames.append(frame)
            self.cause = ended.result()
        finally:
            ended.cancel()
            self.done.set()

    def non_silent_seconds(self, threshold: float = SILENCE_RMS) -> float:
        """Span from the first to the last frame above ``threshold``."""
        loud = [i for i, f in enumerate(self.frames) if np.sqrt(np.mean(samples(f) ** 2)) > threshold]
        return 0.0 if not loud else (loud[-1] - loud[0] + 1) * FRAME_S


async def _run_sipp(args: list[str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "sipp", *args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(SIPP_TIMEOUT_S):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
    return proc.returncode, err.decode(errors="replace") + logs


@pytest.fixture
async def sipp_line():
    collector = Collector()
    lines: list[SipLine] = []

    async def start(progress_status: int = 180) -> SipLine:
        line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None,
                                     progress_status=progress_status), collector)
        await line.start()
        lines.append(line)
        return line

    yield start, collector
    for line in lines:
        await line.stop()


async def test_sipp_builtin_uac_pcap_pcma(sipp_line, tmp_path: Path) -> None:
    start, collector = sipp_line
    line = await start()
    os.symlink(SIPP_PCAP_DIR, tmp_path / "pcap")
    rc, log = await _run_sipp(
        [f"127.0.0.1:{line.udp_port}", "-sn", "uac_pcap", "-i", "127.0.0.1", "-p", str(_free_port()),
         "-mp", str(_free_port(even_pair=True)), "-m", "1", "-nostdin", "-trace_err"], tmp_path)
    assert rc == 0, log
    async with asyncio.timeout(CALL_END_WAIT_S):
        await collector.done.wait()
    assert collector.cause is HangupCause.CALLER_HUNG_UP
    stats = collector.call.audio.statistics()
    assert stats.dropped_source == 0 and stats.dropped_pt == 0 and stats.malformed == 0
    assert stats.received >= 230 and stats.sent > 300
    assert abs(collector.non_silent_seconds() - G711A_SECONDS) <= 0.3, collector.non_silent_seconds()
    assert collector.non_silent_seconds(SPEECH_RMS) > 6.0  # real content, not just idle codes
    assert collector.digits == ["1"]
    assert collector.call.caller.number == "sipp"
    assert line.active_calls == 0


async def _pcmu_tone_call(line: SipLine, collector: Collector, tmp_path: Path, scenario: str) -> None:
    """Run ``scenario`` (plays pcap/pcmu_tone.pcap: 3 s of 1 kHz, then BYE) and check that the
    whole tone reached the call."""
    (tmp_path / "pcap").mkdir()
    write_rtp_pcap(tmp_path / "pcap" / "pcmu_tone.pcap", pcmu_tone(3.0, 1000.0), payload_type=0, ptime_ms=20)
    rc, log = await _run_sipp(
        [f"127.0.0.1:{line.udp_port}", "-sf", str(SCENARIO_DIR / scenario), "-i", "127.0.0.1",
         "-p", str(_free_port()), "-mp", str(_free_port(even_pair=True)), "-m", "1", "-nostdin",
         "-trace_err"], tmp_path)
    assert rc == 0, log
    async with asyncio.timeout(CALL_END_WAIT_S):
        await collector.done.wait()
    assert collector.cause is HangupCause.CALLER_HUNG_UP
    assert abs(collector.non_silent_seconds() - 3.0) <= 0.3, collector.non_silent_seconds()
    loud = b"".join(f for f in collector.frames if np.sqrt(np.mean(samples(f) ** 2)) > SPEECH_RMS)
    assert abs(peak_hz(samples(loud[: 8000 * 2])) - 1000.0) < 20


async def test_sipp_pcmu_scenario_with_183(sipp_line, tmp_path: Path) -> None:
    start, collector = sipp_line
    line = await start(progress_status=183)
    await _pcmu_tone_call(line, collector, tmp_path, "uac_pcmu_early.xml")
    assert collector.call.caller.number == "+15550001111"
    assert collector.call.caller.name == "PCMU tester"


async def test_sipp_caller_requiring_100rel_pracks_our_180_before_the_200(sipp_line, tmp_path: Path) -> None:
    """SIPp sends ``Require: 100rel``, takes the RSeq from our 180 (checked present) and PRACKs it;
    the 200 to the INVITE must come after the 200 to the PRACK (the scenario's order)."""
    start, collector = sipp_line
    line = await start(progress_status=180)
    await _pcmu_tone_call(line, collector, tmp_path, "uac_100rel.xml")
    assert collector.call.caller.name == "PRACK tester"
    assert line.active_calls == 0


async def test_sipp_key_sent_in_sip_info_reaches_the_call(sipp_line, tmp_path: Path) -> None:
    """SIPp sends INFO with application/dtmf-relay Signal=5 mid-call (and expects 200)."""
    start, collector = sipp_line
    line = await start()
    await _pcmu_tone_call(line, collector, tmp_path, "uac_info_dtmf.xml")
    assert collector.call.caller.name == "INFO tester"
    assert collector.digits == ["5"]


async def test_sipp_late_offer_caller_answers_our_offer_in_the_ack(sipp_line, tmp_path: Path) -> None:
    """INVITE without SDP: our 200 offers PCMU/PCMA/telephone-event (SIPp checks the m= line),
    SIPp answers PCMU in the ACK and its tone reaches us; we send to the address of its answer."""
    start, collector = sipp_line
    line = await start()
    await _pcmu_tone_call(line, collector, tmp_path, "uac_late_offer.xml")
    assert collector.call.caller.name == "Late offer"
    stats = collector.call.audio.statistics()
    assert stats.dropped_source == 0 and stats.dropped_pt == 0 and stats.sent > 100
    assert line.active_calls == 0
