"""End to end: an inbound route sends a SIP call to an IVR menu; the caller presses 2 (RFC 4733)
and reaches the sales queue, where the only agent (Chromium, logged in to sales only) takes it.

Real peers only: the box runs as its own process, SIPp dials ``sip:help@box`` and plays SIPp's
RFC 4733 "2" pcap 1.5 s after the answer (the menu's built-in chime has ended by then).
"""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_sip_call_to_browser import UI_TIMEOUT_MS, free_udp_port, load_record, login
from tests.support.box import running_box, run_sipp, sipp_workdir
from tests.support.browser import launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.sipp]

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "sipp" / "uac_ivr_key_2.xml"
AGENTS = """
[[agents]]
id = "alice"
password = "alice-pw"
queues = ["support"]

[[agents]]
id = "carol"
name = "Carol Diaz"
password = "carol-pw"
queues = ["sales"]
"""
MENU = """
[[queues]]
id = "sales"
name = "Sales"
ringback_s = 0.0

[[menus]]
id = "main"
options = { "1" = "queue:support", "2" = "queue:sales" }
timeout_s = 15

[[inbound]]
called = "help"
menu = "main"
"""


async def test_sip_caller_presses_2_in_the_menu_and_the_sales_agent_answers(tmp_path: Path) -> None:
    async with running_box(tmp_path, extra_config=MENU, agents=AGENTS) as box:
        async with launch_chromium() as browser:
            page = await browser.new_page()
            await login(page, box.web_url, "carol", "carol-pw")
            work = sipp_workdir(tmp_path)
            shutil.copy(SCENARIO, work / SCENARIO.name)
            sipp = asyncio.create_task(run_sipp(
                [f"127.0.0.1:{box.sip_udp}", "-sf", SCENARIO.name, "-s", "help", "-m", "1",
                 "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                cwd=work, timeout=60,
            ), name="sipp")

            await box.wait_for_log(r"call \S+ .* -> menu main", timeout=10)
            await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
            await box.wait_for_log(r"menu path main:2 -> queue sales")
            await page.click("#btn-answer")
            await page.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
            await page.click("#btn-hangup")
            rc, out = await sipp
            assert rc == 0, out[-3000:]
            await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
            await page.click("#btn-wrapup-done")
        await box.wait_for_log(r"call \S+ wrap-up done", timeout=10)
        assert await box.stop() == 0

    calls, _ = await load_record(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert (rec.queue, rec.ivr, rec.outcome, rec.agent_id) == ("sales", ("main:2",), "answered", "carol")
    assert rec.to_number == "help" and rec.dtmf == ""
    assert rec.arrived_at + 1.0 < rec.enqueued_at <= rec.answered_at  # the wait counts from the menu's choice
    assert rec.offers == ("carol",)
