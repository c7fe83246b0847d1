"""``AnalogLine``: one voice modem as an appliance line (``appliance.lines`` contract).

The line runs the modem under ``appliance.supervisor.supervise``: open the port,
initialise, then serve rings until the port goes away (``PortLost`` -> restart with
backoff; the port name is resolved again on every run, so a re-enumerated modem comes
back). Each ring sequence becomes one ``AnalogCall`` (drivers.voicemodem.inbound) handed
to the ``IncomingCallHandler``; outgoing calls are ``AnalogOutboundCall``
(drivers.voicemodem.outbound). Answer, dial and hang-up are serialised on the one modem.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Callable

from appliance.lines import (CallerId, CallGone, DialFailed, DialFailure, HangupCause, IncomingCallHandler, LineKind,
                             LineStatus)
from appliance.supervisor import Backoff, supervise
from drivers.at.errors import AtTimeout, DriverError, PortLost
from drivers.serial_port import SerialLink
from drivers.voicemodem.callerid import CallerIdReport
from drivers.voicemodem.config import AnalogConfig
from drivers.voicemodem.inbound import AnalogCall
from drivers.voicemodem.modem import DialResult, ModemSettings, PortMode, VoiceModem
from drivers.voicemodem.outbound import DIAL_FAILURES, AnalogOutboundCall
from drivers.voicemodem.profiles import VoiceModemProfile
from drivers.voicemodem.setup import ensure_caller_id, initialise
from drivers.voicemodem.state import (
    CallAbandoned,
    CallOffered,
    DtmfReceived,
    FarEndGone,
    LineState,
    MachineEvent,
    Notice,
)

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL_S = 30.0  # an idle modem is asked for its caller-ID setting this often: a wedged
# USB modem shows up here, and so does one that reset itself and forgot +VCID
HANGUP_TIMEOUT_S = 8.0  # stop voice (2 x 1.5 s) + on hook (5 s): the hang-up must finish even when cancelled
HANDLER_GRACE_S = 5.0  # on line shutdown, give running call handlers this long to notice the end
DIAL_ABORT_TIMEOUT_S = 3.0  # a cancelled ATD task unwinds at once; bounded so hangup() always finishes
_DIALABLE = re.compile(r"[0-9*#]{1,40}")  # DTMF/pulse digits; the dial plan gives national format


class AnalogLine:
    def __init__(
        self,
        *,
        line_id: str,
        port: str | Callable[[], str],
        handler: IncomingCallHandler,
        profile: VoiceModemProfile | None = None,
        settings: ModemSettings = ModemSettings(),
        backoff: Backoff = Backoff(),
        on_status: Callable[[LineStatus], None] | None = None,
        withhold_prefix: str | None = None,
    ) -> None:
        self.line_id = line_id
        self.withhold_prefix = withhold_prefix  # dialled before the number to withhold caller ID ("141", "*67")
        self._on_status = on_status
        self._port_name: str | None = None
        self._port = port
        self._handler = handler
        self._profile = profile
        self._settings = settings
        self._backoff = backoff
        self._modem: VoiceModem | None = None
        self._call: AnalogCall | AnalogOutboundCall | None = None
        self._ops = asyncio.Lock()  # answer/hang-up/keepalive: one modem operation at a time
        self._tasks: set[asyncio.Task[None]] = set()
        self._up = asyncio.Event()
        self._idle = asyncio.Event()  # initialised, no call, on hook
        self.runs = 0

    @classmethod
    def from_config(cls, config: AnalogConfig, handler: IncomingCallHandler, *,
                    on_status: Callable[[LineStatus], None] | None = None) -> "AnalogLine":
        return cls(line_id=config.line_id, port=config.resolve, handler=handler, profile=config.chipset(),
                   settings=config.settings(), on_status=on_status, withhold_prefix=config.withhold_prefix)

    @property
    def modem(self) -> VoiceModem | None:
        return self._modem

    def status(self, state: str, detail: str = "") -> LineStatus:
        modem = self._modem
        profile = modem.profile if modem is not None else self._profile
        return LineStatus(line_id=self.line_id, kind=LineKind.ANALOG, state=state, detail=detail,
                          model=profile.name if profile is not None else None, port=self._port_name,
                          calls=0 if self._call is None or self._call.ended else 1, updated=time.time())

    def _publish(self, state: str, detail: str = "") -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status(state, detail))
            except Exception:  # a broken subscriber must not take the line down
                log.exception("%s: status subscriber failed", self.line_id)

    def _on_down(self, name: str, exc: BaseException, delay: float) -> None:
        self._publish("down", f"{exc or type(exc).__name__}; retrying in {delay:.0f}s")

    async def run(self) -> None:
        """Serve the line until cancelled (restarts after port loss with backoff)."""
        try:
            await supervise(f"line {self.line_id}", self._run_once, backoff=self._backoff, on_down=self._on_down)
        finally:
            await self._drain_tasks()

    async def wait_up(self) -> None:
        """Return once the modem is initialised and waiting for calls."""
        await self._up.wait()

    async def wait_idle(self) -> None:
        """Return once the line is up with no call on it and the modem back on hook."""
        await self._idle.wait()

    async def _run_once(self) -> None:
        self.runs += 1
        self._publish("starting")
        port = self._port() if callable(self._port) else self._port
        self._port_name = port
        modem: VoiceModem | None = None

        def on_data(data: bytes) -> None:
            if modem is not None:
                modem.feed(data)

        link = await SerialLink.open(port, on_data)
        modem = VoiceModem(link.write, self._on_event, profile=self._profile, settings=self._settings,
                           name=self.line_id, congested=link.congested)
        link.lost.add_done_callback(lambda fut: modem.connection_lost(fut.result() if not fut.cancelled() else None))
        self._modem = modem
        cause = HangupCause.LINE_LOST
        try:
            await initialise(modem)
            self._profile = modem.profile  # keep the detected profile across restarts
            self._up.set()
            self._idle.set()
            log.info("%s: ready on %s", self.line_id, port)
            fmt = modem.format
            self._publish("up", f"{fmt.name} at {modem.rate} Hz" if fmt is not None else "")
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_INTERVAL_S):
                        await asyncio.shield(link.lost)
                    raise PortLost(f"{self.line_id}: {port} went away")
                except TimeoutError:
                    await self._keepalive(modem)
        except asyncio.CancelledError:
            cause = HangupCause.SHUTDOWN
            if self._call is not None and link.is_open:
                self._call._end(cause)
                self._call = None
                await self._release(modem)  # shielded and bounded: the line must not stay off hook
            raise
        finally:
            self._up.clear()
            self._idle.clear()
            if self._call is not None:
                self._call._end(cause)
                self._call = None
            self._modem = None
            link.close()

    async def _keepalive(self, modem: VoiceModem) -> None:
        if modem.mode is not PortMode.COMMAND or modem.machine.state is not LineState.IDLE or self._ops.locked():
            return
        async with self._ops:
            try:
                await ensure_caller_id(modem)  # a liveness probe that also repairs a forgotten +VCID
            except AtTimeout:
                raise PortLost(f"{self.line_id}: modem stopped answering") from None

    # ---- events from the modem ----------------------------------------------------------------
    def _on_event(self, event: MachineEvent) -> None:
        call = self._call
        if isinstance(event, CallOffered):
            self._offer(event.caller)
        elif isinstance(event, DtmfReceived):
            if call is not None:
                call._digit(event.digit)
        elif isinstance(event, FarEndGone):
            log.info("%s: far end gone (%s)", self.line_id, event.reason)
            if call is not None:
                self._spawn(call.hangup(HangupCause.FAR_END_HUNG_UP), "far-end-hangup")
        elif isinstance(event, CallAbandoned):
            log.info("%s: caller gave up after %d ring(s)", self.line_id, event.rings)
            if call is not None:
                call._end(HangupCause.CANCELLED)
                self._call = None
            if self._up.is_set():
                self._idle.set()
        elif isinstance(event, Notice):
            log.info("%s: %s", self.line_id, event.text)

    def _offer(self, report: CallerIdReport | None) -> None:
        call = AnalogCall(self, report)
        self._call = call
        self._idle.clear()
        log.info("%s: incoming call %s from %s (%s)", self.line_id, call.call_id,
                 call.caller.number or "-", call.caller.presentation)
        self._publish("up", "ringing")
        self._spawn(self._run_handler(call), f"handler-{call.call_id}")

    async def _run_handler(self, call: AnalogCall) -> None:
        try:
            await self._handler(call)
        except Exception:
            log.exception("%s: call handler failed for %s", self.line_id, call.call_id)
            await call.hangup(HangupCause.ERROR)

    def _spawn(self, coro, name: str) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.line_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=HANDLER_GRACE_S)

    # ---- call operations ---------------------------------------------------------------------
    async def _answer(self, call: AnalogCall) -> None:
        async with self._ops:
            modem = self._modem
            if modem is None or call is not self._call or call.ended:
                raise CallGone(f"{call.call_id} is no longer ringing")
            if modem.machine.state is not LineState.RINGING:
                raise CallGone(f"{call.call_id}: line is {modem.machine.state}")
            try:
                call.audio = await modem.answer()
            except DriverError as exc:
                log.warning("%s: answering %s failed: %s", self.line_id, call.call_id, exc)
                call._end(HangupCause.ERROR)
                await self._release(modem)
                raise CallGone(f"{call.call_id}: answer failed ({exc})") from exc
            log.info("%s: answered %s (%s)", self.line_id, call.call_id,
                     "full duplex" if call.audio.full_duplex else "receive only")

    async def _hangup(self, call: AnalogCall, cause: HangupCause) -> None:
        async with self._ops:
            if call.ended:
                return
            call._end(cause)
            modem = self._modem
            if modem is not None and modem.machine.state is LineState.RINGING:
                # an analog line cannot reject a ringing call: it keeps ringing until the
                # caller gives up, and no new call is offered for this ring sequence
                return
            if call is self._call:
                self._call = None
            if modem is not None:
                await self._release(modem)

    async def _release(self, modem: VoiceModem) -> None:
        """Back on hook, whatever state the modem is in; shielded and bounded."""
        async def release() -> None:
            if modem.machine.state in (LineState.VOICE, LineState.ANSWERING, LineState.DIALING):
                modem.machine.transition(LineState.HANGING_UP, "hang up")
            await modem.stop_voice()
            await modem.on_hook()

        task = asyncio.get_running_loop().create_task(release(), name=f"{self.line_id}:release")
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT_S):
                await asyncio.shield(task)
        except (TimeoutError, DriverError) as exc:
            log.warning("%s: hang-up not confirmed (%s)", self.line_id, exc or type(exc).__name__)
        else:
            if self._call is None and self._up.is_set():
                self._idle.set()

    # ---- outgoing calls (appliance.lines.Dialler; see drivers.voicemodem.outbound) -------------
    async def dial(self, number: str, caller: CallerId | None = None) -> AnalogOutboundCall:
        """Start dialling ``number`` and return the call at once. DialFailed now when the line is
        down (LINE_DOWN), carries a call or rings (LINE_BUSY), or ``number`` is not dialable."""
        modem = self._modem
        if modem is None or not self._up.is_set():
            raise DialFailed(DialFailure.LINE_DOWN, f"{self.line_id}: voice modem not ready (starting or unplugged)")
        if (self._call is not None and not self._call.ended) or modem.machine.state is not LineState.IDLE \
                or modem.mode is not PortMode.COMMAND:
            raise DialFailed(DialFailure.LINE_BUSY, f"{self.line_id}: line in use ({modem.machine.state})")
        digits = re.sub(r"[\s().-]", "", number)
        if not _DIALABLE.fullmatch(digits):
            raise DialFailed(DialFailure.REJECTED, f"{number!r} is not a dialable number on an analog line")
        dialled = digits
        if caller is not None and caller.presentation == "withheld":
            if self.withhold_prefix:
                dialled = self.withhold_prefix + digits
            else:
                log.info("%s: caller ID cannot be withheld (no withhold_prefix configured); presenting it", self.line_id)
        call = AnalogOutboundCall(self, digits)
        self._call = call
        self._idle.clear()
        log.info("%s: dialling %s (call %s)", self.line_id, dialled, call.call_id)
        self._publish("up", "dialling")
        call.dial_task = asyncio.get_running_loop().create_task(self._run_dial(call, dialled),
                                                                name=f"{self.line_id}:dial-{call.call_id}")
        self._tasks.add(call.dial_task)
        call.dial_task.add_done_callback(self._tasks.discard)
        return call

    async def _run_dial(self, call: AnalogOutboundCall, dialled: str) -> None:
        async with self._ops:
            modem = self._modem
            if modem is None or call.ended:
                call._end(HangupCause.LINE_LOST)
                return
            if modem.machine.state is not LineState.IDLE:  # a RING got in first: that call has the line
                call._fail(DialFailure.LINE_BUSY, f"line {modem.machine.state}")
                call._end(HangupCause.REJECTED)
                return
            try:
                result = await modem.dial(dialled)
            except (DriverError, ValueError) as exc:  # port trouble, refused voice stream, undialable prefix
                log.warning("%s: dialling %s failed: %s", self.line_id, dialled, exc)
                result, detail = DialResult.ERROR, str(exc)
            else:
                detail = str(result)
            if result is DialResult.CONNECTED and modem.audio is not None:
                call._connected(modem.audio)
                log.info("%s: %s answered (VCON; %s)", self.line_id, call.called,
                         "full duplex" if modem.audio.full_duplex else "receive only")
                self._publish("up", "on a call")
                return
            log.info("%s: dialling %s: %s", self.line_id, call.called, detail)
            call._fail(DIAL_FAILURES.get(result, DialFailure.ERROR), detail)
            call._end(HangupCause.REJECTED)
            if self._call is call:
                self._call = None
            await self._release(modem)

    async def _hangup_outbound(self, call: AnalogOutboundCall, cause: HangupCause) -> None:
        task = call.dial_task
        if task is not None and not task.done():
            task.cancel()  # aborts the ATD; the line goes back on hook below
            await asyncio.wait({task}, timeout=DIAL_ABORT_TIMEOUT_S)
        await self._hangup(call, cause)

    def _call_finished(self) -> None:
        if self._up.is_set():
            self._publish("up")
