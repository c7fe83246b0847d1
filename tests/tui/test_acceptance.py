"""Issue acceptance: the TUI follows a real box with a simulated GSM modem while a real
Chromium agent answers the simulated call."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.api.client import SocketClient
from tests.api.running_box import RunningBox
from tests.e2e.test_sip_call_to_browser import UI_TIMEOUT_MS, login
from tests.support.browser import launch_chromium
from tests.tui.conftest import FrozenClock, wait_until
from tests.tui.test_pilot import rows
from tui.app import BranchlineApp

pytestmark = [pytest.mark.browser]

CONFIG = """\
[sip]
bind = "127.0.0.1"
port = 0

[web]
bind = "127.0.0.1"
port = 0
ice_host_addresses = ["127.0.0.1"]

[simulators]
gsm = true
analog = false

[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-pw"
"""
CALLER = "+447700900777"


async def test_tui_shows_modem_signal_waiting_call_and_agent_answer_within_a_second(tmp_path: Path) -> None:
    (tmp_path / "branchline.toml").write_text(CONFIG)
    rb = RunningBox(tmp_path).start()
    try:
        app = BranchlineApp(SocketClient(rb.run_dir), clock=FrozenClock(), blink=False)
        on_call_at: list[float] = []  # when the TUI received the call's move to on_call
        original = app._on_event

        def spy(event) -> None:
            if str(getattr(getattr(event, "call", None), "state", "")) == "on_call":
                on_call_at.append(time.monotonic())
            original(event)

        app._on_event = spy
        async with app.run_test(size=(80, 24)) as pilot:
            # the simulated modem's signal on the dashboard (rssi 17 of 31: three bars)
            await wait_until(pilot, lambda: any(r[0].startswith("gsm:") and r[1] == "up" for r in rows(app, "dash-lines")), 30)
            gsm = next(r for r in rows(app, "dash-lines") if r[0].startswith("gsm:"))
            assert gsm[2] == "▂▄▆·"
            async with launch_chromium() as browser:
                page = await browser.new_page()
                await login(page, rb.box.endpoints.web_url, "alice", "alice-pw")
                await page.select_option("#pause-reason", "break")
                await page.click("#btn-pause")
                await page.wait_for_selector("#state[data-state=paused]", timeout=UI_TIMEOUT_MS)
                await rb.acall(lambda: rb.box.simulation.call("gsm", CALLER))
                await wait_until(pilot, lambda: rows(app, "dash-calls")[:1] and rows(app, "dash-calls")[0][:3] == ["in", CALLER, "queued"], 20)
                await page.click("#btn-available")
                await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
                answering = time.monotonic()
                await page.click("#btn-answer")
                await wait_until(pilot, lambda: rows(app, "dash-calls")[0][2:4] == ["on call", "Alice Martin"], 5)
                assert on_call_at and on_call_at[0] - answering <= 1.0
                await rb.acall(lambda: rb.box.simulation.hangup("gsm"))
                await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
                await wait_until(pilot, lambda: rows(app, "dash-calls")[0][0] == "no calls", 10)
    finally:
        rb.stop()
