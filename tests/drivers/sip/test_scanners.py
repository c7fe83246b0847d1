"""Security acceptance with a real scanner: SIPVicious (svwar, svcrack, svmap) against a SipLine on 127.0.0.1.

The line runs its registrar with MD5 only (the weakest configuration, and the only one
svcrack can compute). A control run without the guard proves svcrack really cracks our
registrar when nothing stops it; with the guard it is banned and recovers nothing.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path

import pytest

from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.registrar import FREE_UNANSWERED_CHALLENGES
from tests.drivers.sip.peer import SipPeer, new_call_id
from tests.drivers.sip.test_line_security import register
from tests.drivers.sip.test_sipp import _free_port

BIN = Path(sys.executable).parent
SCANNER_TIMEOUT_S = 60.0  # svcrack keeps sending for ~10 s into a ban before it gives up
PASSWORD = "pw-7391"
pytestmark = pytest.mark.skipif(not (BIN / "sipvicious_svwar").exists(), reason="sipvicious not installed")


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


@pytest.fixture
async def line_factory():
    lines: list[SipLine] = []

    async def factory(guard: bool = True, numbers: tuple[str, ...] = ()) -> SipLine:
        line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, guard=guard,
                                     users=(("201", PASSWORD), ("202", "other-secret")),
                                     auth_algorithms=("MD5",), numbers=numbers), _no_calls)
        await line.start()
        lines.append(line)
        return line

    yield factory
    for line in lines:
        await line.stop()


async def scan(tool: str, line: SipLine, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / f"sipvicious_{tool}"), "-x", "127.0.0.1", "-b", "127.0.0.1", "-P", str(_free_port()),
        "-p", str(line.udp_port), *args, "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(SCANNER_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(errors="replace")


def dictionary(tmp_path: Path) -> Path:
    words = [f"guess{i}" for i in range(30)] + [PASSWORD] + ["after"]  # the password is the 31st try
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return path


async def test_control_svcrack_cracks_an_unguarded_registrar(line_factory, tmp_path: Path) -> None:
    line = await line_factory(guard=False)
    rc, out = await scan("svcrack", line, "-u", "201", "-d", str(dictionary(tmp_path)), "--maximumtime=3")
    assert f"| 201       | {PASSWORD}" in out, out  # so the guarded run below is a real test


async def test_svcrack_is_banned_and_recovers_no_password(line_factory, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip")
    line = await line_factory()
    rc, out = await scan("svcrack", line, "-u", "201", "-d", str(dictionary(tmp_path)), "--maximumtime=3")
    assert PASSWORD not in out and "found nothing" in out, out
    bans = [r.getMessage() for r in caplog.records if "banned" in r.getMessage()]
    assert bans == ["SIP source 127.0.0.1 banned for 300 s after 10 failed attempts (last: wrong password for '201')"]
    stats = line.guard_statistics()
    assert stats.bans_total == 1 and stats.dropped_banned > 0
    assert line.bindings("201") == ()


@pytest.mark.parametrize("args", [
    ("-m", "REGISTER"),
    ("-m", "REGISTER", "--force"),  # scan even though unknown users are challenged
    ("-m", "OPTIONS"),
], ids=["register", "register-force", "options"])
async def test_svwar_enumerates_no_extension(line_factory, args: tuple[str, ...]) -> None:
    line = await line_factory()
    rc, out = await scan("svwar", line, *args, "-e", "195-210", "--maximumtime=3")
    assert "found nothing" in out, out
    assert "| Extension" not in out and not re.search(r"extension '\d+' (exists|probably)", out), out


async def test_svwar_invite_sweep_reaches_no_call_and_is_banned(line_factory, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip")
    line = await line_factory(numbers=("+4930123456",))  # the one number this box takes calls for
    rc, out = await scan("svwar", line, "-m", "INVITE", "-e", "100-140", "--maximumtime=3")
    assert "found nothing" in out, out
    assert line.statistics().calls_total == 0
    assert any(r.getMessage().startswith("SIP source 127.0.0.1 banned for 300 s after 10 failed attempts (last: "
                                         "INVITE for unknown number") for r in caplog.records)


async def test_svmap_sees_a_sip_device_only(line_factory) -> None:
    line = await line_factory()
    rc, out = await scan("svmap", line)
    assert f"127.0.0.1:{line.udp_port}" in out and "Branchline" in out, out


async def test_own_register_sweep_is_banned_and_cannot_tell_users_apart(line_factory, caplog) -> None:
    """What svwar would do if it pressed on: REGISTER 195..215 without credentials, fast."""
    caplog.set_level(logging.WARNING, logger="drivers.sip")
    line = await line_factory()
    peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
    try:
        answers: dict[str, str] = {}
        for ext in range(195, 216):
            peer.send(register(peer, str(ext), call_id=new_call_id(), cseq=1))
        try:
            while True:  # collect until the line goes silent (it stops answering once banned)
                response = await peer.recv(timeout=1.0)
                answers[response.to_addr.uri.user] = f"{response.status} {response.reason}"
        except TimeoutError:
            pass
    finally:
        peer.close()
    # known (201, 202) or not, each counts alike: 195..199 are free (unanswered challenges a phone
    # may hold), 200..209 are 10 failures; the 10th bans, so 210.. go unanswered
    assert sorted(answers) == [str(e) for e in range(195, 195 + FREE_UNANSWERED_CHALLENGES + 10)]
    assert set(answers.values()) == {"401 Unauthorized"}  # 201 and 202 look exactly like the rest
    assert any(r.getMessage().startswith("SIP source 127.0.0.1 banned for 300 s after 10 failed attempts (last: "
                                         "REGISTER for '209' without usable credentials") for r in caplog.records)
