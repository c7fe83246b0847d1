from __future__ import annotations

from pathlib import Path

import pytest

from appliance.api.client import SocketClient
from tests.api.running_box import RunningBox
from tests.api.scripted import box  # noqa: F401  (the features-box fixture, shared with tests/tui)


@pytest.fixture
def running_box(tmp_path: Path):
    rb = RunningBox(tmp_path).start()
    try:
        yield rb
    finally:
        rb.stop()


@pytest.fixture
async def client(running_box: RunningBox):
    async with SocketClient(running_box.run_dir) as c:
        yield c
