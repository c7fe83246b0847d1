"""Load: SIPp places 20 calls per second for 30 s (600 calls) against one SipLine; none may fail."""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from appliance.lines import HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from tests.drivers.sip.test_sipp import _free_port

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]

CALL_RATE = 20  # calls per second
CALLS = 600  # 30 s at 20 cps
TALK_MS = 1000  # SIPp hangs up after this (-d)
LOAD_TIMEOUT_S = 90.0  # 30 s of calls + talk + slack for a loaded 2-core box


class Answerer:
    def __init__(self) -> None:
        self.answered = 0
        self.causes: dict[HangupCause, int] = {}
        self.peak = 0
        self.active = 0

    async def __call__(self, call) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await call.answer()
            self.answered += 1
            cause = await call.wait_ended()
            self.causes[cause] = self.causes.get(cause, 0) + 1
        finally:
            self.active -= 1


async def test_20_cps_for_30_s_without_a_failed_call(tmp_path: Path) -> None:
    handler = Answerer()
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False), handler)
    await line.start()
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            "sipp", f"127.0.0.1:{line.udp_port}", "-sn", "uac", "-i", "127.0.0.1", "-p", str(_free_port()),
            "-r", str(CALL_RATE), "-m", str(CALLS), "-d", str(TALK_MS), "-nostdin", "-trace_err",
            "-trace_stat", "-fd", "1", cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(LOAD_TIMEOUT_S):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        elapsed = time.monotonic() - started
        stats = sorted(tmp_path.glob("*_.csv"))
        summary = stats[-1].read_text().splitlines() if stats else []
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        header, last = summary[0].split(";"), summary[-1].split(";")
        row = dict(zip(header, last))
        assert int(row["SuccessfulCall(C)"]) == CALLS and int(row["FailedCall(C)"]) == 0, row
        async with asyncio.timeout(5.0):
            while line.active_calls:
                await asyncio.sleep(0.05)  # bounded poll: the last BYEs were answered before SIPp exited
    finally:
        await line.stop()
    assert line.statistics().calls_total == CALLS
    assert handler.answered == CALLS and handler.causes == {HangupCause.CALLER_HUNG_UP: CALLS}
    assert line.guard_statistics().dropped_rate == 0
    print(f"load: {CALLS} calls at {CALL_RATE} cps in {elapsed:.1f} s, peak {handler.peak} concurrent, 0 failed")
