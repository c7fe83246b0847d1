from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.records import CallOutcome, CallRecord
from appliance.storage import Store


def make_call(call_id: str, *, at: float | None = None, number: str = "+4930123", customer_id: str | None = None,
              outcome: CallOutcome = CallOutcome.ANSWERED, recording_path: str | None = None) -> CallRecord:
    return CallRecord(call_id, "gsm0", "gsm", "inbound", number, "Ann", "+4930999", "main", outcome, "normal",
                      arrived_at=time.time() if at is None else at, customer_id=customer_id,
                      offers=("a1", "a2"), tags=("vip",), recording_path=recording_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "data", branch="br1")
    try:
        yield s
    finally:
        await s.close()
