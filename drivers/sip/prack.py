"""Reliable provisional responses, UAS side (RFC 3262), for a caller that sends ``Require: 100rel``.

Such a caller accepts a 18x only when it carries ``Require: 100rel`` and an ``RSeq``; it
acknowledges each with a PRACK naming that RSeq and the INVITE's CSeq (``RAck``). We resend
the 18x at T1, 2*T1, 4*T1 ... until the PRACK comes, and give up after 64*T1 (§3: the INVITE
then gets a 5xx). One reliable provisional is outstanding at a time, and a 200 that follows a
provisional with SDP waits for its PRACK.

We do not ask for 100rel ourselves (our INVITEs do not say ``Supported: 100rel``), so only
inbound calls need this.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

from drivers.sip import transaction
from drivers.sip.useragent import ServerTransaction

log = logging.getLogger(__name__)

RSEQ_MAX = 2**31 - 1  # §3: the first RSeq is chosen between 1 and 2**31 - 1


def requires_100rel(txn: ServerTransaction) -> bool:
    return any(tag.lower() == "100rel" for tag in txn.request.headers.get_all("Require"))


class ReliableProvisional:
    """The reliable 18x responses of one INVITE server transaction."""

    def __init__(self, txn: ServerTransaction, call_id: str, on_give_up: Callable[[], None]) -> None:
        self._txn = txn
        self._call_id = call_id
        self._on_give_up = on_give_up
        self._rseq = random.randint(1, RSEQ_MAX // 2)  # room to count up without wrapping
        self._unacked: bytes | None = None  # the 18x waiting for its PRACK
        self._timer: asyncio.TimerHandle | None = None
        self._interval = self._delay = self._elapsed = 0.0
        self._acked = asyncio.Event()
        self._acked.set()  # nothing to wait for yet

    def send(self, status: int, *, to_tag: str, extra: tuple[tuple[str, str], ...], body: bytes) -> bool:
        """Send a reliable 18x and resend it until its PRACK. False when the transaction is over."""
        if self._unacked is not None:
            return False  # §3: not a second one before the first is acknowledged
        self._rseq += 1
        data = self._txn.respond(status, to_tag=to_tag, body=body,
                                 extra=extra + (("Require", "100rel"), ("RSeq", str(self._rseq))))
        if data is None:
            return False
        self._unacked = data
        self._acked.clear()
        self._interval = self._delay = transaction.T1
        self._elapsed = 0.0
        self._arm()
        return True

    def on_prack(self, txn: ServerTransaction) -> None:
        """A PRACK in the early dialog: 200 when it acknowledges our outstanding 18x, else 481."""
        if self._unacked is None or self._rack(txn) != (self._rseq, self._txn.request.cseq.number, "INVITE"):
            txn.respond(481, reason="No Matching Provisional Response")
            return
        txn.respond(200)
        self._stop()
        self._unacked = None
        self._acked.set()

    async def wait_acked(self) -> None:
        """Until the outstanding 18x (if any) has its PRACK, or ``close``. Timed by the 64*T1 give-up."""
        await self._acked.wait()

    @property
    def acked(self) -> bool:
        return self._unacked is None

    def close(self) -> None:
        """The INVITE got its final response (or the call ended): no more resending."""
        self._stop()
        self._acked.set()

    # ---- internals --------------------------------------------------------------
    @staticmethod
    def _rack(txn: ServerTransaction) -> tuple[int, int, str] | None:
        parts = (txn.request.headers.get("RAck") or "").split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        return int(parts[0]), int(parts[1]), parts[2].upper()

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._resend)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _resend(self) -> None:
        self._timer = None
        if self._unacked is None or self._txn.final_sent:
            return
        self._elapsed += self._delay
        give_up_s = 64 * transaction.T1
        if self._elapsed >= give_up_s - 1e-6:
            log.warning("SIP call %s: no PRACK for our reliable %s within %.0f s; refusing the call with 500",
                        self._call_id, self._unacked[8:11].decode(errors="replace"), self._elapsed)
            self._unacked = None
            self.close()
            self._on_give_up()
            return
        self._txn.conn.send(self._unacked)
        self._interval *= 2
        self._delay = min(self._interval, give_up_s - self._elapsed)
        self._arm()
