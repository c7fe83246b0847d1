"""What an agent does to the customer's leg during a call: hold and resume, and key presses.

Hold: the customer hears hold music from the bridge, whatever the line. A line that can
signal hold (SIP: a re-INVITE with ``a=sendonly``, RFC 3264 §8.4, and ``a=sendrecv`` to
resume) is told as well, so the customer's phone shows the call as held. The line's
signalling runs in the background, one request at a time, always towards the state last
asked for: Hold, Resume, Hold pressed quickly ends with the line held. The time on hold is
counted for the call record (``hold_s``, ``holds``).

Keys: digits the agent presses go to the customer's line as DTMF (RFC 4733 events or
in-band tones on SIP, ``AT+VTS`` on a GSM modem), one after another.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Callable, Protocol, runtime_checkable

from media.bridge import Bridge
from media.tones import FrameSource

log = logging.getLogger(__name__)

KEYS = re.compile(r"[0-9*#A-D]{1,32}")
KEY_SEND_TIMEOUT_S = 5.0  # one digit takes ~100 ms on the wire; a line that takes longer is stuck
INTER_KEY_GAP_S = 0.06  # pacing between two digits: far-end detectors want a pause (Q.24: >= 40 ms)
LINE_HOLD_TIMEOUT_S = 40.0  # a SIP re-INVITE gives up after 32 s (Timer B); the modem lines answer at once


class ControlError(Exception):
    """The agent's request cannot be carried out; the message is shown in the console."""


@runtime_checkable
class LineHold(Protocol):
    """A line that can tell the far end it is held (SIP calls, inbound and outbound)."""

    async def hold(self) -> bool: ...
    async def resume(self) -> bool: ...


class CallerHold:
    """Hold state of one customer leg: the bridge's music, the line's signalling, the time held."""

    def __init__(self, bridge: Bridge, line: Any, music: Callable[[], FrameSource], name: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._bridge = bridge
        self._line = line if isinstance(line, LineHold) else None
        self._music = music
        self._name = name
        self._clock = clock
        self.held = False
        self.holds = 0
        self._since: float | None = None
        self._total = 0.0
        self._line_wanted = False  # the state the line should reach
        self._line_held = False  # the state the line last confirmed
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def hold(self) -> None:
        if self.held:
            raise ControlError("the caller is already on hold")
        self.held, self._since = True, self._clock()
        self.holds += 1
        self._bridge.hold(self._music())
        self._want_line(True)
        log.info("%s: the agent put the caller on hold", self._name)

    def resume(self) -> None:
        if not self.held:
            raise ControlError("the caller is not on hold")
        self._stop_counting()
        self._bridge.unhold()
        self._want_line(False)
        log.info("%s: the agent took the caller off hold", self._name)

    def handed_over(self) -> None:
        """A transfer takes the caller (its own music plays): the agent's hold ends here."""
        if self.held:
            self._stop_counting()

    def connected(self) -> None:
        """The caller is talking to a party again (after a transfer or a consult): unhold the line."""
        if not self.held:
            self._want_line(False)

    def take_fields(self) -> dict[str, Any]:
        """``hold_s`` and ``holds`` for a segment's record since the last call; a hold in progress
        is counted up to now and goes on counting for the next segment."""
        now = self._clock()
        total = self._total + (now - self._since if self._since is not None else 0.0)
        holds = self.holds
        self._total, self.holds = 0.0, (1 if self.held else 0)
        if self._since is not None:
            self._since = now
        return {"hold_s": round(total, 3) if holds else None, "holds": holds}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def _stop_counting(self) -> None:
        if self._since is not None:
            self._total += self._clock() - self._since
        self.held, self._since = False, None

    def _want_line(self, held: bool) -> None:
        self._line_wanted = held
        if self._line is None:
            return
        task = asyncio.get_running_loop().create_task(self._signal(), name=f"line-hold:{self._name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _signal(self) -> None:
        assert self._line is not None
        async with self._lock:
            want = self._line_wanted
            if want == self._line_held:
                return
            try:
                async with asyncio.timeout(LINE_HOLD_TIMEOUT_S):
                    ok = await (self._line.hold() if want else self._line.resume())
            except TimeoutError:
                ok = False
            except Exception as exc:  # a line fault must not end the call's task
                log.warning("%s: the line failed to %s: %r", self._name, "hold" if want else "resume", exc)
                ok = False
            if ok:
                self._line_held = want
            else:
                log.info("%s: the far end did not accept %s; the caller hears our %s anyway", self._name,
                         "hold" if want else "resume", "music" if want else "agent")


class CallerKeys:
    """Keys to one customer's line, one digit at a time: keys pressed quickly (each click is its
    own command) queue up behind the digit on the wire instead of being refused while it plays,
    and each digit is sent only while ``still()`` says the agent may (not after a transfer began)."""

    def __init__(self, line: Any, name: str) -> None:
        self._send = getattr(line, "send_dtmf", None)
        self._name = name
        self._lock = asyncio.Lock()

    async def send(self, digits: str, still: Callable[[], bool] = lambda: True) -> None:
        """ControlError when the keys are not keys, the line cannot send them, or it refused one."""
        if not KEYS.fullmatch(digits):
            raise ControlError("keys are 0-9, *, # and A-D (at most 32 at a time)")
        if self._send is None:
            raise ControlError("this line cannot send keys")
        async with self._lock:
            for index, digit in enumerate(digits):
                if index:
                    await asyncio.sleep(INTER_KEY_GAP_S)
                if not still():
                    raise ControlError("the call changed hands; the remaining keys were not sent")
                try:
                    async with asyncio.timeout(KEY_SEND_TIMEOUT_S):
                        ok = await self._send(digit)
                except TimeoutError:
                    ok = False
                if ok is False:
                    log.info("%s: key %s not sent (the call is not connected for keys now)", self._name, digit)
                    raise ControlError(f"key {digit} could not be sent now")
        log.info("%s: the agent sent %d key(s)", self._name, len(digits))
