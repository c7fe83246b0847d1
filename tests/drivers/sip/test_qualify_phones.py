"""Qualify against real phones: baresip and linphonec register over UDP and answer the line's
OPTIONS with what they really send, which keeps them reachable ping after ping."""
from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers.sip import qualify
from drivers.sip.line import SipLine, SipLineConfig
from tests.e2e.test_baresip import (
    free_sip_port,
    free_tcp_port,
    running_baresip,
    write_baresip_config,
    write_phone_wav,
)
from tests.support.linphone import running_linphonec, write_linphone_config

WAIT_S = 15.0  # a phone starts and registers in ~1 s; generous for a loaded 2-core box
QUALIFY_S = 0.5
WATCH_S = 2.6  # five more OPTIONS, each of which must be answered


class _Reachability(logging.Handler):
    """Events for the qualify log lines about extension 201."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reachable = asyncio.Event()
        self.unreachable = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("SIP extension 201 ") and " is reachable" in text:
            self.reachable.set()
        elif text.startswith("SIP extension 201 ") and " is unreachable" in text:
            self.unreachable.set()


@asynccontextmanager
async def qualifying_line(monkeypatch, **config) -> AsyncIterator[tuple[SipLine, _Reachability]]:
    monkeypatch.setattr(qualify, "QUALIFY_TIMEOUT_S", 1.0)
    events = _Reachability()
    log = logging.getLogger("drivers.sip.qualify")
    old_level = log.level
    log.setLevel(logging.DEBUG)  # the first "reachable" is a DEBUG record
    log.addHandler(events)
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=(("201", "secret"),),
                                 qualify_s=QUALIFY_S, **config), _no_calls)
    await line.start()
    try:
        yield line, events
    finally:
        await line.stop()
        log.removeHandler(events)
        log.setLevel(old_level)


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


async def _stays_reachable(line: SipLine, events: _Reachability) -> None:
    async with asyncio.timeout(WAIT_S):
        await events.reachable.wait()
    assert line.reachable("201") is True
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(WATCH_S):
            await events.unreachable.wait()
    [binding] = line.bindings("201")
    state = line.reachability(binding)
    assert state.reachable is True and state.rtt_ms is not None


@pytest.mark.skipif(shutil.which("baresip") is None, reason="no baresip")
async def test_baresip_answers_options_and_stays_reachable(tmp_path: Path, monkeypatch) -> None:
    async with qualifying_line(monkeypatch, auth_algorithms=("MD5",)) as (line, events):
        ctrl_port = free_tcp_port()
        conf = write_baresip_config(tmp_path / "baresip", box_port=line.udp_port,
                                    wav=write_phone_wav(tmp_path / "phone.wav", seconds=1.0),
                                    sip_port=free_sip_port(), ctrl_port=ctrl_port)
        async with running_baresip(conf, ctrl_port):
            await _stays_reachable(line, events)


@pytest.mark.skipif(shutil.which("linphonec") is None, reason="no linphonec")
async def test_linphonec_answers_options_and_stays_reachable(tmp_path: Path, monkeypatch) -> None:
    async with qualifying_line(monkeypatch) as (line, events):
        setup = write_linphone_config(tmp_path / "linphone", box_port=line.udp_port, user="201", password="secret")
        async with running_linphonec(setup):
            await _stays_reachable(line, events)
