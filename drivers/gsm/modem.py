"""One connected period of one GSM modem: ports, bring-up, URC routing, calls, SMS, USSD.

``GsmModem.connect()`` opens the AT port (and the PCM port when the profile has one),
``initialise()`` runs the bring-up, ``serve()`` runs the background loops until the
port goes away (it then raises ``PortLost``; the line's supervisor starts a new
session). URCs are parsed into typed items and routed: calls go through the pure
``CallMachine``, SMS work goes to one worker through a bounded queue, USSD replies
resolve the pending request. ``dial()`` starts an outgoing call: the ATD runs in the
background and the same ``CallMachine`` tracks it to the answer (or the failure).
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
from drivers.gsm.ussd import encode_request, parse_cusd
from drivers.serial_port import SerialLink

log = logging.getLogger(__name__)

KEEPALIVE_S = 30.0  # an idle modem is poked this often; a dead USB link is found within 35 s
KEEPALIVE_TIMEOUT_S = 5.0
SMS_QUEUE_MAX = 64  # pending SMS notifications; beyond that we sweep the store instead
USSD_TIMEOUT_S = 30.0  # the network answers USSD in 1-30 s
USSD_RELEASE_GRACE_S = 2.0  # after "+CUSD: 2,<text>" the real reply follows within ~1 s, if at all
DIAL_TIMEOUT_S = 90.0  # ATD returns OK at once on most; with COLP=1 only on the answer (networks ring <= 60-90 s)
DIAL_ACCEPT_S = 2.0  # dial() waits this long for ATD's immediate OK/ERROR, then leaves it running
RING_GONE_S = 8.0  # no RING for this long: ask +CLCC whether the caller is still there
CLCC_POLL_S = 1.0  # while dialing on modems without progress URCs
AUDIO_RETRY_S = 0.5  # AT+CPCMREG=1 answering ERROR on a degraded SIM7600: retry after this
UNEXPECTED_LOG_LIMIT = 5  # garbage lines logged at INFO per session, then only at DEBUG
CONCAT_SWEEP_S = 60.0  # how often incomplete concatenated SMS sets are checked for timeout


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
        self._sms_q: asyncio.Queue[tuple] = asyncio.Queue(SMS_QUEUE_MAX)
        self._ussd: asyncio.Future[UssdReply] | None = None
        self._ussd_lock = asyncio.Lock()
        self._ussd_packed = profile.ussd_packed
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
        self.link = await SerialLink.open(port, self.ch.feed)
        self.link.lost.add_done_callback(lambda f: self._on_lost(f))
        if audio_port and self.profile.has_audio_port:
            try:
                self.audio_link = await SerialLink.open(audio_port, self.audio.on_data)
                self.audio.attach(self.audio_link)
            except PortLost as exc:
                log.warning("%s: audio port unavailable (%s); calls will have no audio", port, exc)
        self.sms = SmsService(self.ch, self.line_id, self._emit, self._persist)

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
        assert ch is not None and self.sms is not None
        await setup.wake(ch)
        await setup.reset_echo(ch)
        await setup.unlock_sim(ch, self.pin)
        ident = await setup.identify(ch, self.profile)
        if expected_imei and ident.imei != expected_imei:
            raise DriverError(f"{ch.name} is modem {ident.imei}, not {expected_imei}")
        self.identity = ident
        self.line_id = f"gsm:{ident.imei}"
        self.sms.line_id = self.line_id
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
        assert self.link is not None
        self._queue_sms(("sweep",))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keepalive(), name=f"{self.line_id} keepalive")
                tg.create_task(self._sms_worker(), name=f"{self.line_id} sms")
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

    async def _sms_worker(self) -> None:
        assert self.sms is not None
        loop = asyncio.get_running_loop()
        last_expiry = loop.time()
        while True:
            try:
                async with asyncio.timeout(CONCAT_SWEEP_S):
                    job = await self._sms_q.get()
            except TimeoutError:
                job = ("expire",)
            try:
                kind = job[0]
                if kind == "new":
                    await self.sms.on_new(job[1], job[2])
                elif kind == "direct":
                    await self.sms.on_direct(job[1])
                elif kind == "status":
                    await self.sms.on_status_stored(job[1], job[2])
                elif kind == "sweep":
                    await self.sms.sweep()
                if loop.time() - last_expiry >= CONCAT_SWEEP_S or kind == "expire":
                    last_expiry = loop.time()
                    await self.sms.expire()
            except AtError as exc:
                log.warning("%s: SMS job %s failed: %s", self.line_id, job, exc)

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
            clcc = [x for x in lines if isinstance(x, urc.ClccLine)]
            if stale and not any(x.stat in (4, 5) for x in clcc):
                self._apply(self.machine.handle(cm.RingTimeout()))
            for item in clcc:
                self._apply(self.machine.handle(item))

    # ---- URC routing -----------------------------------------------------------------
    def _queue_sms(self, job: tuple) -> None:
        try:
            self._sms_q.put_nowait(job)
        except asyncio.QueueFull:
            log.warning("%s: SMS notifications backing up; will sweep the store", self.line_id)
            if job[0] != "sweep":
                self._sms_q.get_nowait()
                self._sms_q.put_nowait(("sweep",))

    def _on_urc(self, u: Urc) -> None:
        item = urc.parse(u, self.profile)
        if isinstance(item, (urc.Ring, urc.Clip)):
            self._last_ring = asyncio.get_running_loop().time()
        if isinstance(item, (urc.Ring, urc.Clip, urc.CallProgress, urc.CallEnd, urc.ClccLine)):
            self._apply(self.machine.handle(item))
        elif isinstance(item, urc.Signal):
            self._emit(SignalChanged(self.line_id, item.rssi, dbm(item.rssi)))
        elif isinstance(item, urc.Registration):
            self._emit(RegistrationChanged(self.line_id, item.stat, item.lac, item.ci))
        elif isinstance(item, urc.NewSms):
            self._queue_sms(("new", item.storage, item.index))
        elif isinstance(item, urc.StatusStored):
            self._queue_sms(("status", item.storage, item.index))
        elif isinstance(item, urc.SmsPdu):
            if item.kind == "+CMT":
                self._queue_sms(("direct", item.pdu))
            elif self.sms is not None:
                self.sms.on_status_pdu(item.pdu)
        elif isinstance(item, urc.MemoryFull):
            log.warning("%s: SMS storage %s full; draining it", self.line_id, item.storage)
            self._queue_sms(("sweep",))
        elif isinstance(item, urc.UssdLine):
            self._on_cusd(item.text)
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
        """Send a USSD code and wait for the network's reply (plain first; packed after ERROR)."""
        assert self.ch is not None
        async with self._ussd_lock:
            self._ussd = asyncio.get_running_loop().create_future()
            try:
                for packed in ((self._ussd_packed,) if self._ussd_packed else (False, True)):
                    try:
                        await self.ch.command(f'AT+CUSD=1,"{encode_request(code, packed=packed)}",15', prefix="")
                        self._ussd_packed = packed
                        break
                    except AtError:
                        if packed:
                            raise
                        log.info("%s: plain USSD rejected; retrying packed 7-bit", self.line_id)
                async with asyncio.timeout(timeout):
                    return await self._ussd
            finally:
                self._ussd = None

    def _on_cusd(self, text: str) -> None:
        res = parse_cusd(text, packed_hint=self._ussd_packed)
        if res is None:
            log.warning("%s: unparseable USSD reply %r", self.line_id, text)
            return
        reply = UssdReply(self.line_id, res.status, res.text, res.dcs)
        if self._ussd is not None and not self._ussd.done():
            if res.status == 2 and res.text:
                # "+CUSD: 2,"Initiating Release"" may precede the real answer: give it a moment
                fut = self._ussd
                asyncio.get_running_loop().call_later(
                    USSD_RELEASE_GRACE_S, lambda: fut.done() or fut.set_result(reply))
                return
            self._ussd.set_result(reply)
        else:
            self._emit(reply)  # network-initiated notification
