"""One connected period of one GSM modem: ports, bring-up, URC routing, calls, SMS, USSD.

``GsmModem.connect()`` opens the AT port (and the PCM port when the profile has one),
``initialise()`` runs the bring-up, ``serve()`` runs the background loops until the
port goes away (it then raises ``PortLost``; the line's supervisor starts a new
session). URCs are parsed into typed items and routed: calls go through the pure
``CallMachine``, SMS work goes to the ``SmsService``'s queue and worker (drivers.gsm.sms),
USSD replies to the ``UssdSession`` (drivers.gsm.ussd_session). ``dial()`` starts an
outgoing call: the ATD runs in the background and the same ``CallMachine`` tracks it
to the answer (or the failure).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from appliance.lines import CallerId, CallGone, HangupCause
from drivers.at.channel import AtChannel, Urc
from drivers.at.errors import AtError, AtTimeout, DriverError, PortLost
from drivers.gsm import calls as cm
from drivers.gsm import setup, urc
from drivers.gsm.audio import ModemAudio
from drivers.gsm.events import (CallStateChanged, DtmfReceived, MissedCall, ModemReady, RegistrationChanged,
                                SignalChanged, UssdReply, dbm)
from drivers.gsm.inbound import GsmCall
from drivers.gsm.profiles import ModemProfile
from drivers.gsm.sms import Persist, SmsService
from drivers.gsm.ussd_session import USSD_TIMEOUT_S, UssdSession
from drivers.serial_port import SerialLink

log = logging.getLogger(__name__)

KEEPALIVE_S = 30.0  # an idle modem is poked this often; a dead USB link is found within 35 s
KEEPALIVE_TIMEOUT_S = 5.0
DIAL_TIMEOUT_S = 90.0  # ATD returns OK at once on most; with COLP=1 only on the answer (networks ring <= 60-90 s)
DIAL_ACCEPT_S = 2.0  # dial() waits this long for ATD's immediate OK/ERROR, then leaves it running
RING_GONE_S = 8.0  # no RING for this long: ask +CLCC whether the caller is still there
CLCC_POLL_S = 1.0  # while dialing on modems without progress URCs
RELEASE_FINAL_WAIT_S = 1.0  # ^DSCI release while dialling: the final code (BUSY ...) follows in the same burst
AUDIO_RETRY_S = 0.5  # AT+CPCMREG=1 answering ERROR on a degraded SIM7600: retry after this
UNEXPECTED_LOG_LIMIT = 5  # garbage lines logged at INFO per session, then only at DEBUG


class GsmModem:
    def __init__(self, profile: ModemProfile, *, line_id: str = "gsm:?", emit: Callable[[object], None] | None = None,
                 persist: Persist | None = None, on_incoming: Callable[[GsmCall], None] | None = None,
                 pin: str | None = None) -> None:
        self.profile = profile
        self.line_id = line_id
        self._emit = emit or (lambda ev: None)
        self._on_incoming = on_incoming
        self.pin = pin
        self.audio = ModemAudio()
        if profile.dtmf_urc is None:  # Huawei: no DTMF URC; detect the tones in the call audio
            self.audio.detect_dtmf(self._inband_digit)
        self.machine = cm.CallMachine(profile)
        self.call: GsmCall | None = None
        self.ch: AtChannel | None = None
        self.link: SerialLink | None = None
        self.audio_link: SerialLink | None = None
        self.identity: setup.Identity | None = None
        self.voice_ok = True
        self.sms: SmsService | None = None
        self._persist = persist
        self.ussd_session: UssdSession | None = None
        self._dtmf_cmd = profile.dtmf_send
        self._last_ring = 0.0
        self._dial_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.ready = asyncio.Event()
        self.unexpected_lines = 0

    # ---- ports ---------------------------------------------------------------------------
    async def connect(self, port: str, audio_port: str | None = None) -> None:
        self.ch = AtChannel(self._write, self._on_urc, urc_prefixes=self.profile.urc_prefixes + self.profile.noise_prefixes,
                            error_finals=self.profile.error_finals, name=port)
        self.sms = SmsService(self.ch, self.line_id, self._emit, self._persist)  # before the port: URCs may come at once
        self.ussd_session = UssdSession(self.ch, self.line_id, self._emit, packed=self.profile.ussd_packed)
        self.link = await SerialLink.open(port, self.ch.feed)
        self.link.lost.add_done_callback(lambda f: self._on_lost(f))
        if audio_port and self.profile.has_audio_port:
            try:
                self.audio_link = await SerialLink.open(audio_port, self.audio.on_data)
                self.audio.attach(self.audio_link)
            except PortLost as exc:
                log.warning("%s: audio port unavailable (%s); calls will have no audio", port, exc)

    def _write(self, data: bytes) -> None:
        assert self.link is not None
        self.link.write(data)

    def _on_lost(self, fut: asyncio.Future) -> None:
        exc = fut.result() if not fut.cancelled() else None
        self.ready.clear()  # no new calls on a vanished modem (the line notices a moment later)
        if self.ch is not None:
            self.ch.connection_lost(exc)
        self._apply(self.machine.handle(cm.Lost()))

    async def close(self, cause: HangupCause = HangupCause.LINE_LOST) -> None:
        for t in list(self._tasks):
            t.cancel()
        self._apply(self.machine.handle(cm.Lost(cause)))
        for link in (self.audio_link, self.link):
            if link is not None:
                await link.wait_closed()

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.line_id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, (PortLost, AtTimeout)):
                log.info("%s: %s stopped: %s", self.line_id, task.get_name(), exc)
            else:
                log.error("%s: %s failed: %r", self.line_id, task.get_name(), exc)

    # ---- bring-up ------------------------------------------------------------------------
    async def initialise(self, *, expected_imei: str | None = None) -> setup.Identity:
        ch = self.ch
        assert ch is not None and self.sms is not None and self.ussd_session is not None
        await setup.wake(ch)
        await setup.reset_echo(ch)
        await setup.unlock_sim(ch, self.pin)
        ident = await setup.identify(ch, self.profile)
        if expected_imei and ident.imei != expected_imei:
            raise DriverError(f"{ch.name} is modem {ident.imei}, not {expected_imei}")
        self.identity = ident
        self.line_id = f"gsm:{ident.imei}"
        self.sms.line_id = self.ussd_session.line_id = self.line_id
        self.sms.storage = await setup.configure(ch, self.profile, self.pin)
        self.voice_ok = await setup.voice_supported(ch, self.profile)
        op = await setup.operator(ch)
        rssi = await setup.signal(ch)
        assert self.link is not None
        self._emit(ModemReady(self.line_id, self.link.name, ident.imei, ident.iccid, ident.manufacturer, ident.model, op, rssi))
        log.info("%s ready on %s (%s %s, ICCID %s, operator %s, rssi %s)", self.line_id, self.link.name,
                 ident.manufacturer, ident.model, ident.iccid, op, rssi)
        self.ready.set()
        return ident

    async def serve(self) -> None:
        """Background loops until the port is lost; raises PortLost / AtTimeout."""
        assert self.link is not None and self.sms is not None
        self.sms.notify(("sweep",))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keepalive(), name=f"{self.line_id} keepalive")
                tg.create_task(self.sms.work(), name=f"{self.line_id} sms")
                tg.create_task(self._watch_calls(), name=f"{self.line_id} call-watch")
                await asyncio.shield(self.link.lost)
                raise PortLost(f"{self.link.name} disappeared")
        except ExceptionGroup as eg:  # report the first real cause to the supervisor, not the group
            lost = [e for e in eg.exceptions if isinstance(e, PortLost)]
            raise (lost or list(eg.exceptions))[0] from None

    async def _keepalive(self) -> None:
        assert self.ch is not None
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self.ch.command("AT", timeout=KEEPALIVE_TIMEOUT_S, urgent=True)

    async def _watch_calls(self) -> None:
        """Caller gave up without a hang-up URC; dialing on modems without progress URCs."""
        assert self.ch is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CLCC_POLL_S)
            state = self.machine.state
            polling = state in (cm.CallState.DIALING, cm.CallState.ALERTING) and self.profile.poll_clcc_when_dialing
            stale = state is cm.CallState.RINGING and loop.time() - self._last_ring > RING_GONE_S
            if not (polling or stale):
                continue
            try:
                r = await self.ch.command("AT+CLCC")
            except AtError:
                continue
            lines = [urc.parse(Urc(line), self.profile) for line in r.lines]
            clcc = [x for x in lines if isinstance(x, urc.CallStatus)]
            if stale and not any(x.stat in (4, 5) for x in clcc):
                self._apply(self.machine.handle(cm.RingTimeout()))
            for item in clcc:
                self._apply(self.machine.handle(item))

    # ---- URC routing -----------------------------------------------------------------
    def _on_urc(self, u: Urc) -> None:
        item = urc.parse(u, self.profile)
        if isinstance(item, (urc.Ring, urc.Clip)):
            self._last_ring = asyncio.get_running_loop().time()
        if isinstance(item, (urc.Ring, urc.Clip, urc.CallProgress, urc.CallEnd, urc.CallStatus)):
            self._apply(self.machine.handle(item))
        elif isinstance(item, urc.Signal):
            self._emit(SignalChanged(self.line_id, item.rssi, dbm(item.rssi)))
        elif isinstance(item, urc.Registration):
            self._emit(RegistrationChanged(self.line_id, item.stat, item.lac, item.ci))
        elif isinstance(item, (urc.NewSms, urc.StatusStored, urc.SmsPdu, urc.MemoryFull)):
            assert self.sms is not None  # made with the channel, before any byte can arrive
            self.sms.on_urc(item)
        elif isinstance(item, urc.UssdLine):
            assert self.ussd_session is not None
            self.ussd_session.on_cusd(item.text)
        elif isinstance(item, urc.Dtmf):
            self._emit(DtmfReceived(self.line_id, item.digit, item.duration_ms))
            if self.call is not None:
                self.call.deliver_dtmf(item.digit)
        elif isinstance(item, urc.PinState):
            log.info("%s: SIM state %s", self.line_id, item.state)
        elif isinstance(item, urc.Unknown):
            self.unexpected_lines += 1
            level = logging.INFO if self.unexpected_lines <= UNEXPECTED_LOG_LIMIT else logging.DEBUG
            log.log(level, "%s: ignoring unexpected line from modem: %r", self.line_id, item.text[:80])

    def _inband_digit(self, digit: str) -> None:
        self._emit(DtmfReceived(self.line_id, digit, None))
        if self.call is not None:
            self.call.deliver_dtmf(digit)

    def _apply(self, effects: list[cm.Effect]) -> None:
        for e in effects:
            if isinstance(e, cm.Offer):
                call = GsmCall(self, e.caller)
                self.call = call
                self._emit(CallStateChanged(self.line_id, call.call_id, "ringing", e.caller.presentation))
                log.info("%s: incoming call from %s (%s)", self.line_id, e.caller.number, e.caller.presentation)
                if self._on_incoming is not None:
                    self._on_incoming(call)
            elif isinstance(e, cm.CallerUpdate) and self.call is not None:
                self.call.caller = e.caller
            elif isinstance(e, cm.Connected) and self.call is not None:
                self.call._set_state(cm.CallState.ACTIVE)
            elif isinstance(e, cm.Progress) and self.call is not None:
                self.call._set_state(e.state)
                self._emit(CallStateChanged(self.line_id, self.call.call_id, str(e.state)))
            elif isinstance(e, cm.EnableAudio):
                self._spawn(self._enable_audio(), "audio-on")
            elif isinstance(e, cm.ReleaseSeen):
                asyncio.get_running_loop().call_later(
                    RELEASE_FINAL_WAIT_S, lambda: self._apply(self.machine.handle(cm.ReleaseTimeout())))
            elif isinstance(e, cm.Ended):
                self._ended(e)

    def _ended(self, e: cm.Ended) -> None:
        self.audio.disable()
        call, self.call = self.call, None
        if call is None:
            return
        call._finish(e.cause, e.detail, e.duration_s, e.failure)
        self._emit(CallStateChanged(self.line_id, call.call_id, "ended", f"{e.cause}: {e.detail}"))
        if call.direction == "in" and not e.answered and e.cause is HangupCause.CANCELLED:
            self._emit(MissedCall(self.line_id, call.caller.number, call.caller.presentation))
        if e.cause is not HangupCause.LINE_LOST and self.link is not None and self.link.is_open:
            self._spawn(self._after_call(e), "after-call")

    async def _after_call(self, e: cm.Ended) -> None:
        assert self.ch is not None
        await setup.best_effort(self.ch, *self.profile.audio_off)
        if not e.answered:
            await setup.best_effort(self.ch, "AT+CLCC")  # confirm the list is empty (missed call)

    async def _enable_audio(self) -> None:
        assert self.ch is not None
        call = self.call
        for attempt in range(1, self.profile.audio_retries + 1):
            try:
                for cmd in self.profile.audio_on:
                    await self.ch.command(cmd)
                if self.call is call and call is not None:
                    self.audio.enable()
                    log.info("%s: call audio on (%s)", self.line_id, self.audio_link.name if self.audio_link else "no port")
                return
            except AtError as exc:
                log.warning("%s: enabling call audio failed (%s), attempt %d", self.line_id, exc.final, attempt)
                if attempt < self.profile.audio_retries:
                    await asyncio.sleep(AUDIO_RETRY_S)
        log.error("%s: modem has no voice audio (%s failed); ending the call", self.line_id, ",".join(self.profile.audio_on))
        if call is not None and not call.ended:
            await self.hangup(HangupCause.ERROR)

    # ---- actions -------------------------------------------------------------------------
    async def answer(self) -> None:
        assert self.ch is not None
        try:
            await self.ch.command(self.profile.answer, call_result=True)
        except AtError as exc:
            self._apply(self.machine.handle(urc.CallEnd(exc.final)))
            raise CallGone(f"answer failed: {exc.final}") from None
        self._apply(self.machine.handle(cm.Answered()))

    async def hangup(self, cause: HangupCause) -> None:
        assert self.ch is not None
        dial = self._dial_task
        if dial is not None and not dial.done():
            dial.cancel()  # ATD still waiting for its result: abort it (the channel resyncs first)
        self._apply(self.machine.handle(cm.LocalHangup(cause)))
        try:
            await self.ch.command(self.profile.hangup, urgent=True)
        except DriverError as exc:
            log.info("%s: %s failed (%s); call already gone?", self.line_id, self.profile.hangup, exc)

    async def dial(self, number: str, *, withhold: bool = False) -> GsmCall:
        """Place a voice call and return it ringing (state DIALING). ``withhold``: CLIR for this
        call (``ATD<number>I;``, TS 27.007 6.2). The ATD runs in the background; its immediate
        result (OK, or ERROR/+CME ERROR/BUSY...) usually arrives within ``DIAL_ACCEPT_S``."""
        assert self.ch is not None
        if self.machine.state is not cm.CallState.IDLE or self.call is not None:
            raise DriverError(f"{self.line_id} is busy ({self.machine.state}); cannot dial")
        self._apply(self.machine.handle(cm.Dialled(number)))
        call = GsmCall(self, CallerId(number), direction="out", called=number)
        self.call = call
        command = cm.dial_command(self.profile, number, withhold=withhold)
        log.info("%s: dialling %s%s", self.line_id, number, " (caller ID withheld)" if withhold else "")
        task = asyncio.get_running_loop().create_task(self._run_dial(call, command), name=f"{self.line_id} dial")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._dial_task = task
        await asyncio.wait({task}, timeout=DIAL_ACCEPT_S)
        return call

    async def _run_dial(self, call: GsmCall, command: str) -> None:
        assert self.ch is not None
        try:
            r = await self.ch.command(command, call_result=True, timeout=DIAL_TIMEOUT_S)
        except AtError as exc:
            if self.call is call:
                log.info("%s: %s -> %s", self.line_id, command, exc.final)
                self._apply(self.machine.handle(urc.CallEnd(exc.final, cause={"BUSY": 17, "NO ANSWER": 19}.get(exc.final))))
            return
        except DriverError as exc:  # timeout / port lost: the call cannot be trusted any more
            if self.call is call:
                log.warning("%s: dialling failed (%s)", self.line_id, exc)
                self._apply(self.machine.handle(cm.Lost(HangupCause.ERROR)))
            return
        if self.call is call and any(line.startswith("+COLP:") for line in r.lines):
            self._apply(self.machine.handle(urc.CallProgress("connected", self.machine.index)))  # COLP=1: OK = answered

    async def send_dtmf(self, digit: str) -> None:
        assert self.ch is not None
        await self.ch.command(self._dtmf_cmd.format(call=self.machine.index or 1, digit=digit))

    async def probe_dtmf(self) -> str:
        assert self.ch is not None
        self._dtmf_cmd = await setup.dtmf_command(self.ch, self.profile)
        return self._dtmf_cmd

    async def ussd(self, code: str, *, timeout: float = USSD_TIMEOUT_S) -> UssdReply:
        """Send a USSD code and wait for the network's reply (drivers.gsm.ussd_session)."""
        assert self.ussd_session is not None
        return await self.ussd_session.request(code, timeout=timeout)
