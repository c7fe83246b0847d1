"""USSD over one modem's AT channel: one request at a time, ``+CUSD`` replies matched to it.

``request()`` sends ``AT+CUSD=1,...`` (plain text first; packed GSM 7-bit after an
``ERROR``, and from then on) and waits for the network's ``+CUSD`` reply, which the
modem delivers as a URC after the ``OK`` (or, on some firmware, before it). The
session's owner routes every ``+CUSD`` line to ``on_cusd()``: a reply while a request
waits resolves it; any other is a network-initiated notification and is emitted.
The codec (request packing, DCS decoding) is drivers.gsm.ussd.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from drivers.at.channel import AtChannel
from drivers.at.errors import AtError
from drivers.gsm.events import UssdReply
from drivers.gsm.ussd import encode_request, parse_cusd

log = logging.getLogger(__name__)

USSD_TIMEOUT_S = 30.0  # the network answers USSD in 1-30 s
USSD_RELEASE_GRACE_S = 2.0  # after "+CUSD: 2,<text>" the real reply follows within ~1 s, if at all


class UssdSession:
    def __init__(self, ch: AtChannel, line_id: str, emit: Callable[[object], None], *, packed: bool) -> None:
        self.ch = ch
        self.line_id = line_id
        self._emit = emit
        self._packed = packed  # the modem wants packed 7-bit hex (Huawei); learnt on the first ERROR
        self._reply: asyncio.Future[UssdReply] | None = None
        self._lock = asyncio.Lock()

    async def request(self, code: str, *, timeout: float = USSD_TIMEOUT_S) -> UssdReply:
        """Send a USSD code and wait for the network's reply (plain first; packed after ERROR)."""
        async with self._lock:
            self._reply = asyncio.get_running_loop().create_future()
            try:
                for packed in ((self._packed,) if self._packed else (False, True)):
                    try:
                        await self.ch.command(f'AT+CUSD=1,"{encode_request(code, packed=packed)}",15', prefix="")
                        self._packed = packed
                        break
                    except AtError:
                        if packed:
                            raise
                        log.info("%s: plain USSD rejected; retrying packed 7-bit", self.line_id)
                async with asyncio.timeout(timeout):
                    return await self._reply
            finally:
                self._reply = None

    def on_cusd(self, text: str) -> None:
        res = parse_cusd(text, packed_hint=self._packed)
        if res is None:
            log.warning("%s: unparseable USSD reply %r", self.line_id, text)
            return
        reply = UssdReply(self.line_id, res.status, res.text, res.dcs)
        if self._reply is not None and not self._reply.done():
            if res.status == 2 and res.text:
                # "+CUSD: 2,"Initiating Release"" may precede the real answer: give it a moment
                fut = self._reply
                asyncio.get_running_loop().call_later(
                    USSD_RELEASE_GRACE_S, lambda: fut.done() or fut.set_result(reply))
                return
            self._reply.set_result(reply)
        else:
            self._emit(reply)  # network-initiated notification
