"""``python -m drivers.sim gsm`` runs stand-alone and prints its port(s)."""
import asyncio
import re
import sys

import pytest

from drivers.serial_port import SerialLink


@pytest.mark.parametrize("profile,ports", [("huawei", 2), ("generic", 1)])
async def test_cli_prints_ports_and_answers_at(profile, ports):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "drivers.sim", "gsm", "--profile", profile,
        stdout=asyncio.subprocess.PIPE, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3]))
    try:
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        found = re.findall(r"/dev/pts/\d+", line)
        assert len(found) == ports and f"profile {profile}" in line
        got = bytearray()
        changed = asyncio.Event()
        link = await SerialLink.open(found[0], lambda d: (got.extend(d), changed.set()))
        link.write(b"AT\r")
        async with asyncio.timeout(5):
            while b"OK\r\n" not in got:
                changed.clear()
                await changed.wait()
        assert bytes(got) == b"AT\r\r\nOK\r\n"  # echo on at power-up
        await link.wait_closed()
    finally:
        proc.terminate()
        await proc.wait()


def test_unknown_simulator_name_is_rejected(capsys):
    from drivers.sim.__main__ import main

    assert main(["nokia"]) == 2
    assert "usage" in capsys.readouterr().out


async def test_cli_callee_options_make_the_far_end_busy():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "drivers.sim", "gsm", "--profile", "huawei", "--callee", "busy", "--answer-after", "0.1",
        stdout=asyncio.subprocess.PIPE, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3]))
    try:
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        port = re.findall(r"/dev/pts/\d+", line)[0]
        got = bytearray()
        changed = asyncio.Event()
        link = await SerialLink.open(port, lambda d: (got.extend(d), changed.set()))
        link.write(b"ATD+447700900123;\r")
        async with asyncio.timeout(5):
            while b"^CEND" not in got or not got.endswith(b"\r\n"):
                changed.clear()
                await changed.wait()
        assert bytes(got) == (b"ATD+447700900123;\r\r\nOK\r\n\r\n^ORIG:1,0\r\n\r\n^CONF:1\r\n"
                              b"\r\n^CEND:1,0,104,17\r\n")
        await link.wait_closed()
    finally:
        proc.terminate()
        await proc.wait()
