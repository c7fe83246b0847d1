"""The agent console across a box restart: the page notices that its log-in is gone and asks
for a new one (it used to sit "offline" for good), and a new log-in works; a password set by
the site admin ends the open console at once, with the reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.api.client import SocketClient
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav
from tests.support.softphone import free_tcp_port

pytestmark = [pytest.mark.browser]

UI_TIMEOUT_MS = 20_000


async def log_in(page, url: str) -> None:
    await page.fill("#agent-id", "alice")
    await page.fill("#password", "alice-pw")
    await page.click("#login-btn")
    await page.wait_for_selector("#conn.online", timeout=UI_TIMEOUT_MS)


async def test_a_box_restart_sends_the_agent_back_to_the_login_form(tmp_path: Path) -> None:
    port = free_tcp_port()
    mic = write_tone_wav(tmp_path / "mic.wav", freq=1000.0, seconds=2.0)
    async with launch_chromium(fake_audio_wav=mic) as browser:
        page = await browser.new_page()
        async with running_box(tmp_path, args=("--web-port", str(port))) as box:
            await page.goto(box.web_url)
            await log_in(page, box.web_url)
            await page.wait_for_selector("#audio-status[data-state=connected]", timeout=UI_TIMEOUT_MS)
            assert await box.stop() == 0
        await page.wait_for_selector("#conn:not(.online)", timeout=UI_TIMEOUT_MS)
        async with running_box(tmp_path, args=("--web-port", str(port))) as box:
            await page.wait_for_selector("#login-view:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert "log in again" in (await page.text_content("#login-error") or "")
            assert await page.is_hidden("#console-view")
            await log_in(page, box.web_url)  # the same page logs in to the new box
            await page.wait_for_selector("#audio-status[data-state=connected]", timeout=UI_TIMEOUT_MS)
            await page.click("#btn-available")
            await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
            async with SocketClient(box.data_dir / "run") as api:  # the site admin sets a new password
                assert (await api.set_password("alice", "alice-new-pw")).ok
            await page.wait_for_selector("#login-view:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert (await page.text_content("#login-error") or "") == (
                "your password was changed by the site admin. Please log in again.")
            assert await box.stop() == 0
