"""AT command channel: one command in flight, URCs routed aside, timeouts, resync.

Bytes go in through ``feed()`` (from the serial link); lines come out of the shared
``AtFramer``. While a command is pending, each line is classified:

1. a line starting with the command's own response prefix (``+CSQ:`` for ``AT+CSQ``)
   is part of the response, even when the same prefix is a URC at other times
   (``+CREG:``, ``+CPIN:``, ``+CLCC:``);
2. a line starting with a URC prefix goes to ``on_urc`` — also in the middle of a
   response or between the ``> `` prompt and the final result;
3. a final result code completes the command (``OK``/``CONNECT`` succeed; ``ERROR``,
   ``+CME ERROR``, ``+CMS ERROR``, vendor ``COMMAND NOT SUPPORT`` raise). Call results
   (``NO CARRIER``, ``BUSY``, ``NO ANSWER``, ``NO DIALTONE``) are finals only for
   dial/answer commands, otherwise they are URCs (the remote hung up). V.250 result
   code 6 is spelt ``NO DIALTONE``; chipsets that print ``NO DIAL TONE`` are reported
   with the V.250 spelling, so callers match one text;
4. anything else is an information line of the response.

Without a pending command every line is a URC. ``+CMT:`` and ``+CDS:`` carry their PDU
on the next line; the channel joins them into one ``Urc``.

The timeout of a command starts at the write. After a timeout the channel state is
unknown, so the next command first resyncs (``AT`` until ``OK``); if that fails the
caller gets ``AtTimeout`` and the driver is restarted by its supervisor.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from drivers.at.errors import AtError, AtTimeout, PortLost, cme_error, cms_error
from drivers.at.framer import AtFramer, Prompt

log = logging.getLogger(__name__)

AT_TIMEOUT_S = 5.0  # ordinary commands answer in 5-300 ms; 5 s covers a busy UART module
RESYNC_TIMEOUT_S = 2.0  # a plain "AT" after a timeout; a modem that cannot answer it is gone

_CALL_RESULTS = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")  # V.250 result codes 3, 7, 8, 6
_CALL_RESULT_SPELLINGS = {"NO DIAL TONE": "NO DIALTONE"}  # vendor spelling -> V.250 text
_ERROR_RE = re.compile(r"^\+?CM([ES]) ERROR:?\s*(.*)$", re.IGNORECASE)
_BODY_URCS = ("+CMT:", "+CDS:")  # the PDU follows on the next line


@dataclass(frozen=True, slots=True)
class Response:
    command: str
    lines: tuple[str, ...]
    final: str

    def first(self, prefix: str) -> str | None:
        """The value after ``prefix`` in the first information line that has it."""
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return None


@dataclass(frozen=True, slots=True)
class Urc:
    text: str
    body: str | None = None  # the PDU line of +CMT / +CDS


@dataclass(slots=True)
class _Pending:
    command: str
    prefix: str | None
    call_result: bool
    pdu: str | None
    final_on_prefix: bool
    future: asyncio.Future[Response]
    lines: list[str] = field(default_factory=list)


def response_prefix(command: str) -> str | None:
    """``AT+CSQ`` -> ``+CSQ:``, ``AT^CVOICE?`` -> ``^CVOICE:``; None for basic commands."""
    m = re.match(r"^AT([+^$#%][A-Z0-9]+)", command, re.IGNORECASE)
    return f"{m.group(1).upper()}:" if m else None


class _Gate:
    """One holder at a time; urgent waiters (hang-up, keepalive) go first."""

    def __init__(self) -> None:
        self._busy = False
        self._waiters: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    async def acquire(self, urgent: bool) -> None:
        if not self._busy:
            self._busy = True
            return
        fut = asyncio.get_running_loop().create_future()
        queue = self._waiters[0 if urgent else 1]
        queue.append(fut)
        try:
            await fut
        except BaseException:
            if fut in queue:
                queue.remove(fut)
            elif fut.done() and not fut.cancelled():
                self.release()  # we were handed the gate but will not use it
            raise

    def release(self) -> None:
        for queue in self._waiters:
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._busy = False


class AtChannel:
    def __init__(
        self,
        write: Callable[[bytes], None],
        on_urc: Callable[[Urc], None],
        *,
        urc_prefixes: tuple[str, ...],
        error_finals: tuple[str, ...] = (),
        name: str = "at",
    ) -> None:
        self._write = write
        self._on_urc = on_urc
        self._urc_prefixes = urc_prefixes
        self._error_finals = tuple(e.upper() for e in error_finals)
        self.name = name
        self.framer = AtFramer()
        self._gate = _Gate()
        self._pending: _Pending | None = None
        self._body_for: str | None = None
        self._lost: BaseException | None = None
        self.needs_resync = False
        self.echo_expected = True

    # ---- input side -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            if isinstance(item, Prompt):
                self._on_prompt()
            else:
                self._on_line(item.text)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = PortLost(f"{self.name}: port lost ({exc or 'closed'})")
        if self._pending is not None and not self._pending.future.done():
            self._pending.future.set_exception(self._lost)

    def _on_prompt(self) -> None:
        p = self._pending
        if p is None or p.pdu is None:
            log.warning("%s: unexpected '> ' prompt; cancelling text entry", self.name)
            self._write(b"\x1b")
            return
        self.framer.expect_echo(p.pdu)
        self._write(p.pdu.encode("ascii") + b"\x1a")

    def _on_line(self, text: str) -> None:
        if self._body_for is not None:
            head, self._body_for = self._body_for, None
            self._on_urc(Urc(head, text))
            return
        text = _CALL_RESULT_SPELLINGS.get(text.upper(), text)
        p = self._pending
        if p is not None and p.prefix and text.upper().startswith(p.prefix):
            p.lines.append(text)
            if p.final_on_prefix:
                self._complete(p, "OK")
            return
        if text.startswith(_BODY_URCS):
            self._body_for = text
            return
        if text.startswith(self._urc_prefixes) or p is None:
            self._on_urc(Urc(text))
            return
        upper = text.upper()
        if upper in ("OK", "ERROR") or upper.startswith("CONNECT") or upper in self._error_finals:
            self._complete(p, text)
        elif _ERROR_RE.match(text):
            self._complete(p, text)
        elif upper in _CALL_RESULTS:
            if p.call_result:
                self._complete(p, text)
            else:
                self._on_urc(Urc(text))
        else:
            p.lines.append(text)

    def _complete(self, p: _Pending, final: str) -> None:
        self.framer.clear_echo()
        if p.future.done():
            return
        upper = final.upper()
        if upper == "OK" or upper.startswith("CONNECT"):
            p.future.set_result(Response(p.command, tuple(p.lines), final))
            return
        m = _ERROR_RE.match(final)
        if m is None:
            p.future.set_exception(AtError(p.command, final))
        elif m.group(1).upper() == "E":
            p.future.set_exception(cme_error(p.command, final, m.group(2)))
        else:
            p.future.set_exception(cms_error(p.command, final, m.group(2)))

    # ---- output side ------------------------------------------------------------
    async def command(
        self,
        command: str,
        *,
        timeout: float = AT_TIMEOUT_S,
        pdu: str | None = None,
        prefix: str | None = None,
        call_result: bool = False,
        final_on_prefix: bool = False,
        urgent: bool = False,
    ) -> Response:
        """Send ``command`` and return its response; raises AtError / AtTimeout / PortLost."""
        await self._gate.acquire(urgent)
        try:
            if self.needs_resync:
                await self._resync()
            return await self._exchange(command, timeout, pdu, prefix, call_result, final_on_prefix)
        finally:
            self._gate.release()

    async def _exchange(self, command: str, timeout: float, pdu: str | None, prefix: str | None,
                        call_result: bool, final_on_prefix: bool) -> Response:
        if self._lost is not None:
            raise self._lost
        loop = asyncio.get_running_loop()
        p = _Pending(command, prefix if prefix is not None else response_prefix(command),
                     call_result, pdu, final_on_prefix, loop.create_future())
        self._pending = p  # registered before the write: a fast reply cannot be lost
        try:
            if self.echo_expected:
                self.framer.expect_echo(command)
            log.debug("%s -> %s", self.name, command)
            self._write(command.encode("ascii", errors="replace") + b"\r")
            async with asyncio.timeout(timeout):  # starts at the write
                return await p.future
        except TimeoutError:
            self.needs_resync = True
            log.warning("%s: no answer to %s within %.1fs; will resync", self.name, command, timeout)
            raise AtTimeout(command, tuple(p.lines)) from None
        except asyncio.CancelledError:
            # cancelling us cancelled ``p.future`` too: unless it had its answer, a late one must not
            # complete the next command (and an aborted ATD needs the modem back in command mode)
            self.needs_resync = p.future.cancelled() or not p.future.done()
            raise
        finally:
            self._pending = None

    async def _resync(self) -> None:
        try:
            await self._exchange("AT", RESYNC_TIMEOUT_S, None, None, False, False)
        except AtError:
            pass  # any final result means the modem is talking to us again
        self.needs_resync = False
        log.info("%s: resynchronised", self.name)
