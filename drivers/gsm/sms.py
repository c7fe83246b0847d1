"""SMS over AT in PDU mode: read, reassemble, persist-then-delete, status reports, send.

Storage discipline: a stored message is deleted (``AT+CMGD``) only after the owner's
async ``persist`` callback returned for the event that carries it; parts of an
incomplete concatenated message stay on the SIM until the set is delivered. A PDU we
cannot decode is surfaced raw as ``SmsUndecodable`` (and persisted, then deleted) —
never dropped. ``sweep()`` lists and drains the whole store; it runs after init and
when the modem reports its memory full.

The modem's SMS URCs go to ``on_urc()``: the work they start (read, persist, delete)
queues for ``work()``, one job at a time in arrival order, so the URC path never
waits on the modem. A full queue turns into one sweep of the store.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from collections import OrderedDict
from typing import Awaitable, Callable

from drivers.at.channel import AtChannel
from drivers.at.errors import AtError, CmsError
from drivers.gsm import pdu
from drivers.gsm.concat import Assembled, Reassembler
from drivers.gsm.events import SmsReceived, SmsSendFailed, SmsSent, SmsStatus, SmsUndecodable
from drivers.gsm.urc import MemoryFull, NewSms, SmsPdu, StatusStored

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 60.0  # AT+CMGS final result takes 1-10 s, up to 60 s on a slow SMSC
SEND_ATTEMPTS = 3  # the first try plus two retries on a transient +CMS ERROR
SEND_RETRY_DELAY_S = 3.0  # grows linearly: 3 s, 6 s — enough for an SMSC hiccup to clear
LIST_TIMEOUT_S = 20.0  # AT+CMGL on a full 100-slot SIM takes several seconds
TRANSIENT_CMS = frozenset({500, 300, 314, 331, 332, 42, 41, 38, 47})  # unknown/busy/no network/congestion
SENT_MEMORY = 256  # TP-MR wraps at 256: remember at most that many sent parts for report matching
SMS_QUEUE_MAX = 64  # pending SMS notifications; beyond that we sweep the store instead
CONCAT_SWEEP_S = 60.0  # how often incomplete concatenated SMS sets are checked for timeout

Persist = Callable[[SmsReceived | SmsUndecodable], Awaitable[None]]
Emit = Callable[[object], None]

_CMGL_RE = re.compile(r"^\+CMGL:\s*(\d+)\s*,")


class SmsSendError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SmsService:
    def __init__(self, channel: AtChannel, line_id: str, emit: Emit, persist: Persist | None,
                 *, reassembler: Reassembler | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._ch = channel
        self.line_id = line_id
        self._emit = emit
        self._persist = persist
        self.reassembler = reassembler or Reassembler()
        self._clock = clock
        self.storage: str | None = None  # current <mem1> (read/delete) as the modem has it
        self._sent: OrderedDict[int, tuple[str, str]] = OrderedDict()  # mr -> (message_id, destination)
        self._ref = itertools.count(int(time.time()) & 0xFF)
        self._jobs: asyncio.Queue[tuple] = asyncio.Queue(SMS_QUEUE_MAX)

    # ---- URCs and the worker ---------------------------------------------------------
    def on_urc(self, item: NewSms | StatusStored | SmsPdu | MemoryFull) -> None:
        if isinstance(item, NewSms):
            self.notify(("new", item.storage, item.index))
        elif isinstance(item, StatusStored):
            self.notify(("status", item.storage, item.index))
        elif isinstance(item, SmsPdu):
            if item.kind == "+CMT":
                self.notify(("direct", item.pdu))
            else:
                self.on_status_pdu(item.pdu)
        else:
            log.warning("%s: SMS storage %s full; draining it", self.line_id, item.storage)
            self.notify(("sweep",))

    def notify(self, job: tuple) -> None:
        """Queue a job for ``work()``; never blocks (a full queue becomes one sweep)."""
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("%s: SMS notifications backing up; will sweep the store", self.line_id)
            if job[0] != "sweep":
                self._jobs.get_nowait()
                self._jobs.put_nowait(("sweep",))

    async def work(self) -> None:
        """Run queued jobs forever; incomplete concatenated sets are expired every CONCAT_SWEEP_S."""
        loop = asyncio.get_running_loop()
        last_expiry = loop.time()
        while True:
            try:
                async with asyncio.timeout(CONCAT_SWEEP_S):
                    job = await self._jobs.get()
            except TimeoutError:
                job = ("expire",)
            try:
                kind = job[0]
                if kind == "new":
                    await self.on_new(job[1], job[2])
                elif kind == "direct":
                    await self.on_direct(job[1])
                elif kind == "status":
                    await self.on_status_stored(job[1], job[2])
                elif kind == "sweep":
                    await self.sweep()
                if loop.time() - last_expiry >= CONCAT_SWEEP_S or kind == "expire":
                    last_expiry = loop.time()
                    await self.expire()
            except AtError as exc:
                log.warning("%s: SMS job %s failed: %s", self.line_id, job, exc)

    # ---- receiving ---------------------------------------------------------------
    async def _use_storage(self, storage: str) -> None:
        if storage and storage != self.storage:
            await self._ch.command(f'AT+CPMS="{storage}"')
            self.storage = storage

    async def on_new(self, storage: str, index: int) -> None:
        """+CMTI: read the message from the named storage, deliver, delete when persisted."""
        if index < 0:
            log.warning("modem announced SMS at invalid index %s in %s; sweeping the store instead", index, storage)
            await self.sweep()
            return
        await self._use_storage(storage)
        try:
            r = await self._ch.command(f"AT+CMGR={index}")
        except CmsError as exc:
            log.warning("SMS %s/%d could not be read (%s); leaving it", storage, index, exc.final)
            return
        body = _pdu_after(r.lines, "+CMGR:")
        if body is None:
            log.warning("SMS %s/%d: empty slot", storage, index)
            return
        await self._handle_deliver_pdu(body, (self.storage, index))

    async def on_direct(self, hex_pdu: str | None) -> None:
        """+CMT: the message was not stored; persist it and nothing to delete."""
        await self._handle_deliver_pdu(hex_pdu or "", None)

    async def _handle_deliver_pdu(self, hex_pdu: str, token: tuple[str | None, int] | None) -> None:
        try:
            msg = pdu.decode(hex_pdu)
            if not isinstance(msg, pdu.Deliver):
                raise pdu.PduError(f"expected SMS-DELIVER, got {type(msg).__name__}")
        except pdu.PduError as exc:
            log.error("undecodable SMS PDU kept raw (%s): %s", exc, hex_pdu[:80])
            ev = SmsUndecodable(self.line_id, hex_pdu, str(exc), token[0] if token else None, token[1] if token else None)
            await self._deliver(ev, (token,) if token else ())
            return
        for done in self.reassembler.add(msg, hex_pdu, self._clock(), token):
            await self._deliver_assembled(done)

    async def expire(self) -> None:
        for done in self.reassembler.expire(self._clock()):
            log.warning("SMS from %s incomplete after timeout: parts %s of %d", done.sender, done.received, done.parts)
            await self._deliver_assembled(done)

    async def _deliver_assembled(self, a: Assembled) -> None:
        ev = SmsReceived(self.line_id, a.sender, a.text, a.timestamp, a.parts, a.complete, a.raw_pdus)
        await self._deliver(ev, a.tokens)

    async def _deliver(self, ev: SmsReceived | SmsUndecodable, tokens: tuple) -> None:
        if self._persist is not None:
            try:
                await self._persist(ev)
            except Exception as exc:  # the owner failed to store it: keep it on the SIM
                log.error("persisting SMS failed (%s); it stays in modem storage", exc)
                return
        self._emit(ev)
        for token in tokens:
            if token is None:
                continue
            storage, index = token
            try:
                if storage:
                    await self._use_storage(storage)
                await self._ch.command(f"AT+CMGD={index}")
            except AtError as exc:
                log.warning("deleting SMS %s/%s failed: %s", storage, index, exc.final)

    async def sweep(self) -> None:
        """Read every stored message (recovery after restart or memory full)."""
        try:
            r = await self._ch.command("AT+CMGL=4", timeout=LIST_TIMEOUT_S)
        except AtError as exc:
            log.warning("listing stored SMS failed: %s", exc.final)
            return
        lines = list(r.lines)
        for i, line in enumerate(lines):
            m = _CMGL_RE.match(line)
            if m and i + 1 < len(lines) and not lines[i + 1].startswith("+CMGL:"):
                await self._handle_deliver_pdu(lines[i + 1], (self.storage, int(m.group(1))))

    # ---- status reports --------------------------------------------------------
    async def on_status_stored(self, storage: str, index: int) -> None:
        """+CDSI: read the report from its storage (often "SR"); an invalid index means it is gone."""
        try:
            await self._use_storage(storage)
            r = await self._ch.command(f"AT+CMGR={index}")
        except AtError as exc:
            log.warning("status report %s/%d unreadable (%s); dropping the notification", storage, index, exc.final)
            return
        body = _pdu_after(r.lines, "+CMGR:")
        if body is not None:
            self.on_status_pdu(body)
            try:
                await self._ch.command(f"AT+CMGD={index}")
            except AtError as exc:
                log.warning("deleting status report %s/%d failed: %s", storage, index, exc.final)

    def on_status_pdu(self, hex_pdu: str | None) -> None:
        try:
            rep = pdu.decode(hex_pdu or "")
            if not isinstance(rep, pdu.StatusReport):
                raise pdu.PduError(f"expected SMS-STATUS-REPORT, got {type(rep).__name__}")
        except pdu.PduError as exc:
            log.error("undecodable status report kept in the log (%s): %s", exc, (hex_pdu or "")[:80])
            return
        sent = self._sent.get(rep.mr)
        message_id = None
        if sent is not None and _same_number(sent[1], rep.recipient):
            message_id = sent[0]
        self._emit(SmsStatus(self.line_id, rep.mr, rep.recipient, rep.status, rep.outcome, rep.discharge, message_id))

    # ---- sending -----------------------------------------------------------------
    async def send(self, destination: str, text: str, *, status_report: bool = True, smsc: str | None = None,
                   validity: int = 0xAA) -> SmsSent:
        """Send ``text`` (split/UCS-2 as needed). Raises SmsSendError after reporting SmsSendFailed."""
        message_id = uuid.uuid4().hex
        parts = pdu.encode_submit(destination, text, ref=next(self._ref) & 0xFF, status_report=status_report,
                                  smsc=smsc, validity=validity)
        refs: list[int] = []
        for n, part in enumerate(parts, 1):
            for attempt in range(1, SEND_ATTEMPTS + 1):
                try:
                    r = await self._ch.command(f"AT+CMGS={part.tpdu_length}", pdu=part.hex, timeout=SEND_TIMEOUT_S)
                    break
                except CmsError as exc:
                    if exc.code in TRANSIENT_CMS and attempt < SEND_ATTEMPTS:
                        log.warning("SMS to %s part %d/%d: %s; retry %d in %.0fs", destination, n, len(parts),
                                    exc.final, attempt, SEND_RETRY_DELAY_S * attempt)
                        await asyncio.sleep(SEND_RETRY_DELAY_S * attempt)
                        continue
                    return self._fail(message_id, destination, f"{exc.final} (part {n}/{len(parts)}, {attempt} attempt(s))")
                except AtError as exc:
                    return self._fail(message_id, destination, f"{exc.final} (part {n}/{len(parts)})")
            mr_text = r.first("+CMGS:") or ""
            if mr_text.isdigit():
                mr = int(mr_text)
                refs.append(mr)
                self._sent[mr] = (message_id, destination)
                self._sent.move_to_end(mr)
                while len(self._sent) > SENT_MEMORY:
                    self._sent.popitem(last=False)
        ev = SmsSent(self.line_id, message_id, destination, tuple(refs))
        log.info("SMS to %s sent in %d part(s), references %s", destination, len(parts), refs)
        self._emit(ev)
        return ev

    def _fail(self, message_id: str, destination: str, reason: str) -> SmsSent:
        log.error("SMS to %s failed: %s", destination, reason)
        self._emit(SmsSendFailed(self.line_id, message_id, destination, reason))
        raise SmsSendError(reason)


def _pdu_after(lines: tuple[str, ...], header: str) -> str | None:
    for i, line in enumerate(lines):
        if line.startswith(header) and i + 1 < len(lines):
            return lines[i + 1]
    return None


def _same_number(a: str, b: str) -> bool:
    da, db = re.sub(r"\D", "", a), re.sub(r"\D", "", b)
    return bool(da and db) and (da.endswith(db[-9:]) or db.endswith(da[-9:]))
