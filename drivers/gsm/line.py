"""``GsmLine``: one configured GSM modem as a supervised line for the appliance.

Plug-in contract: ``GsmLine(config, on_sms=..., on_event=...)`` then ``await
line.run(handler)``. Each session finds the modem (device path, or USB VID:PID), runs
the bring-up and serves until the port disappears; the supervisor then starts a new
session with back-off. The first session binds the line to the modem's IMEI, so a USB
re-enumeration that renames ``/dev/ttyUSB*`` re-binds the same line (line id
``gsm:<IMEI>``), and a different modem on the same port is refused. ``dial()`` makes
the line an ``appliance.lines.Dialler``.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from appliance.lines import CallerId, CallGone, DialFailed, DialFailure, HangupCause, IncomingCallHandler
from appliance.supervisor import Backoff, supervise
from drivers.at.errors import DriverError, FatalDriverError
from drivers.gsm.events import ModemLost, SmsSent, UssdReply
from drivers.gsm.calls import CallState
from drivers.gsm.inbound import GsmCall
from drivers.gsm.modem import GsmModem
from drivers.gsm.profiles import profile as lookup_profile
from drivers.gsm.sms import Persist
from drivers.serial_port import find_usb_modems

log = logging.getLogger(__name__)

# Re-enumeration takes 1-4 s; restarts at 0.5, 1, 2, 3, 3 ... s (+-20 %) bring a replugged
# modem back within 5 s of it reappearing.
LINE_BACKOFF = Backoff(first_s=0.5, factor=2.0, max_s=3.0, healthy_after_s=60.0)
READY_TIMEOUT_S = 30.0  # callers of send_sms/ussd wait this long for a (re)connecting modem
_DIALABLE = re.compile(r"\+?[0-9*#]{1,40}")  # TS 27.007 dial string digits; the dial plan normalises first

Discover = Callable[[], Sequence[tuple[str, str | None]]]


@dataclass(frozen=True, slots=True)
class GsmConfig:
    port: str | None = None  # e.g. /dev/ttyUSB2 (AT port)
    audio_port: str | None = None  # e.g. /dev/ttyUSB1 (Huawei PCM)
    usb: str | None = None  # "12d1:1001": find by VID:PID instead of a path
    usb_interface: int | None = None  # AT interface number when found by usb
    audio_interface: int | None = None
    profile: str = "generic"
    pin: str | None = None
    imei: str | None = None  # pin the line to one modem

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GsmConfig":
        """One ``[[gsm]]`` TOML table -> config (validated)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown [[gsm]] keys: {', '.join(sorted(unknown))}")
        cfg = cls(**{k: (str(v) if k not in ("usb_interface", "audio_interface") else int(v)) for k, v in d.items()})
        lookup_profile(cfg.profile)
        if not cfg.port and not cfg.usb:
            raise ValueError("[[gsm]] needs port= or usb=")
        return cfg

    def discover(self) -> list[tuple[str, str | None]]:
        if self.port:
            return [(self.port, self.audio_port)]
        assert self.usb is not None
        return find_usb_modems(self.usb, at_interface=self.usb_interface, audio_interface=self.audio_interface)


class GsmLine:
    def __init__(self, config: GsmConfig, *, on_sms: Persist | None = None,
                 on_event: Callable[[object], None] | None = None, discover: Discover | None = None,
                 backoff: Backoff = LINE_BACKOFF) -> None:
        self.config = config
        self.profile = lookup_profile(config.profile)
        self._on_sms = on_sms
        self._on_event = on_event or (lambda ev: None)
        self._discover = discover or config.discover
        self._backoff = backoff
        self._imei = config.imei
        self.line_id = f"gsm:{config.imei}" if config.imei else f"gsm:{config.port or config.usb}"
        self.modem: GsmModem | None = None
        self._ready = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._handler: IncomingCallHandler | None = None

    async def run(self, handler: IncomingCallHandler) -> None:
        """Serve the line until cancelled; raises FatalDriverError when restarting cannot help."""
        self._handler = handler
        async with asyncio.TaskGroup() as tg:  # call handlers outlive a modem session
            self._tg = tg
            where = self.config.port or self.config.usb
            await supervise(f"GSM modem at {where}", self._session, backoff=self._backoff)

    async def _session(self) -> None:
        candidates = list(self._discover())
        if not candidates:
            raise DriverError(f"{self.line_id}: modem not present")
        last: Exception | None = None
        for at_port, audio_port in candidates:
            modem = GsmModem(self.profile, line_id=self.line_id, emit=self._on_event, persist=self._on_sms,
                             on_incoming=self._offer, pin=self.config.pin)
            try:
                await modem.connect(at_port, audio_port)
                ident = await modem.initialise(expected_imei=self._imei)
            except FatalDriverError:
                await modem.close()
                raise
            except DriverError as exc:
                await modem.close()
                last = exc
                continue
            self._imei = ident.imei
            self.line_id = modem.line_id
            self.modem = modem
            self._ready.set()
            cause = HangupCause.LINE_LOST
            try:
                await modem.serve()
            except asyncio.CancelledError:
                cause = HangupCause.SHUTDOWN
                raise
            finally:
                self._ready.clear()
                self.modem = None
                await modem.close(cause)
                self._on_event(ModemLost(self.line_id, str(cause)))
        raise last or DriverError(f"{self.line_id}: no usable modem")

    def _offer(self, call: GsmCall) -> None:
        if self._tg is None or self._handler is None:
            log.error("%s: incoming call but the line is not running; rejecting", self.line_id)
            return
        self._tg.create_task(self._handle(call, self._handler), name=f"{self.line_id} call {call.call_id}")

    async def _handle(self, call: GsmCall, handler: IncomingCallHandler) -> None:
        try:
            await handler(call)
        except CallGone as exc:
            log.info("%s: call %s gone before the handler finished (%s)", self.line_id, call.call_id, exc)
        except Exception:
            log.exception("%s: call handler failed; hanging up %s", self.line_id, call.call_id)
            try:
                await call.hangup(HangupCause.ERROR)
            except DriverError:
                pass

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> GsmModem:
        async with asyncio.timeout(timeout):
            while self.modem is None:
                await self._ready.wait()
        return self.modem

    async def send_sms(self, destination: str, text: str) -> SmsSent:
        modem = await self.wait_ready()
        assert modem.sms is not None
        return await modem.sms.send(destination, text)

    async def ussd(self, code: str) -> UssdReply:
        return await (await self.wait_ready()).ussd(code)

    async def dial(self, number: str, caller: CallerId | None = None) -> GsmCall:
        """``appliance.lines.Dialler``: place a call now and return it ringing.

        Raises DialFailed at once when the modem is not up (LINE_DOWN), already carries a
        call (LINE_BUSY) or ``number`` is not dialable (REJECTED). ``caller``: only the
        presentation can be chosen on a mobile line -- "withheld" dials with CLIR
        (``ATD<number>I;``); the presented number is always the SIM's own.
        """
        modem = self.modem
        if modem is None or not modem.ready.is_set():
            raise DialFailed(DialFailure.LINE_DOWN, f"{self.line_id}: GSM modem not connected (starting or unplugged)")
        if not modem.voice_ok:
            raise DialFailed(DialFailure.LINE_DOWN, f"{self.line_id}: modem firmware has voice calls disabled")
        if modem.call is not None or modem.machine.state is not CallState.IDLE:
            raise DialFailed(DialFailure.LINE_BUSY, f"{self.line_id}: already on a call ({modem.machine.state})")
        digits = re.sub(r"[\s().-]", "", number)
        if not _DIALABLE.fullmatch(digits):
            raise DialFailed(DialFailure.REJECTED, f"{number!r} is not a dialable number")
        try:
            return await modem.dial(digits, withhold=caller is not None and caller.presentation == "withheld")
        except DriverError as exc:  # the modem refused: a call got there first
            raise DialFailed(DialFailure.LINE_BUSY, f"{self.line_id}: {exc}") from None
