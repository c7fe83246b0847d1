"""What an analog line's inbound (drivers.voicemodem.inbound) and outbound
(drivers.voicemodem.outbound) calls share: identity, audio leg, the end, DTMF subscribers."""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Callable

from appliance.lines import HangupCause, LineKind
from drivers.voicemodem.audio import ModemAudio, UnansweredLeg

log = logging.getLogger(__name__)


class AnalogCallBase:
    kind = LineKind.ANALOG

    def __init__(self, line_id: str) -> None:
        self.call_id = f"analog-{uuid.uuid4().hex[:16]}"
        self.line_id = line_id
        self.audio: ModemAudio | UnansweredLeg = UnansweredLeg()
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self._dtmf: list[Callable[[str], None]] = []

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self._dtmf.append(callback)

    def _digit(self, digit: str) -> None:
        for callback in self._dtmf:
            try:
                callback(digit)
            except Exception:  # a faulty subscriber must not break the driver
                log.exception("%s: DTMF callback failed", self.call_id)
