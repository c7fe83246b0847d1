"""The newcomer's path: ``run.py sim ...`` drives the box's built-in simulated lines."""
from __future__ import annotations

import asyncio
import sys
import wave
from pathlib import Path

import numpy as np

from tests.e2e.test_queue_raw_sip import ConsoleAgent, stored_calls
from tests.support.box import ROOT, running_box

CLI_TIMEOUT_S = 60.0


async def sim_cli(box, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--data", str(box.data_dir), "sim", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_simulated_analog_call_and_sms_from_the_cli(tmp_path: Path) -> None:
    async with running_box(tmp_path, simulators="gsm = true\nanalog = true") as box:
        await box.wait_for_log(r"analog:0: ready on", timeout=30)
        await box.wait_for_log(r"gsm:\d+ ready on", timeout=30)
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.send("available")
            rc, out = await sim_cli(box, "call", "analog", "--from", "5035551234")
            assert rc == 0 and "ringing" in out
            offer = await agent.next("offer")
            assert offer["caller"] == "5035551234" and offer["caller_name"] == "BRANCHLINE DEMO"
            await agent.send("answer", call_id=offer["call_id"])
            await agent.next("call", state="on_call")
            await box.wait_for_log(r"simulated analog caller stops ringing \(answered\)")
            rc, out = await sim_cli(box, "hangup", "analog")
            assert rc == 0
            await agent.next("call", state="ended")
            rc, out = await sim_cli(box, "sms", "Hello branch 👋", "--from", "+447700900123")
            assert rc == 0
            sms = await agent.next("sms")
            assert sms["body"] == "Hello branch 👋" and sms["number"] == "+447700900123"
        finally:
            await agent.close()
        assert await box.stop() == 0
    calls = await stored_calls(box.data_dir)
    assert len(calls) == 1 and calls[0].line_id == "analog:0" and calls[0].hangup_cause == "far end hung up"
    wav = next(box.data_dir.rglob("*.wav"))
    with wave.open(str(wav)) as w:
        left = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[0::2]
    assert np.abs(left).max() > 1000  # the demo caller is heard, not silence


async def test_sim_cli_says_clearly_when_no_box_runs(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--data", str(tmp_path / "none"), "sim", "call", "gsm",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, _ = await proc.communicate()
    assert proc.returncode == 1 and "the box is not running" in out.decode() and "Traceback" not in out.decode()


async def test_caller_who_texted_first_is_offered_with_the_sms_in_history(tmp_path: Path) -> None:
    async with running_box(tmp_path, simulators="gsm = true\nanalog = false") as box:
        await box.wait_for_log(r"gsm:\d+ ready on", timeout=30)
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            rc, _ = await sim_cli(box, "sms", "Is the branch open on Saturday?", "--from", "+447700900124")
            assert rc == 0
            await agent.next("sms")
            await agent.send("available")
            rc, _ = await sim_cli(box, "call", "gsm", "--from", "+447700900124")
            assert rc == 0
            offer = await agent.next("offer")
            assert offer["customer_id"] and [h["kind"] for h in offer["history"]] == ["sms"]
            assert "Saturday" in offer["history"][0]["summary"]
            await agent.send("reject", call_id=offer["call_id"])
        finally:
            await agent.close()
