"""The asyncio shell around one voice modem port: command state, voice data state, timers.

Bytes from the port go to the shared ``AtChannel`` in command state and to the
``DleDecoder`` in a voice data state. The switch happens exactly at the ``CONNECT``
line (audio may follow in the same read) and back exactly at ``<DLE><ETX>`` (the
``OK`` after it may be in the same read). Machine deadlines run on ``loop.call_at``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from drivers.at.channel import AtChannel, Urc
from drivers.at.errors import AtError, DriverError, PortLost
from drivers.voicemodem.audio import RX_BUFFER_MS, ModemAudio
from drivers.voicemodem.dle import DTE_ABORT_TX, DTE_END_TX, Audio, DleDecoder, VoiceEvent, shield
from drivers.voicemodem.formats import SampleConverter, SampleFormat, energy
from drivers.voicemodem.profiles import VoiceModemProfile
from drivers.voicemodem.state import (
    LONG_SILENCE_S,
    NO_VOICE_GRACE_S,
    RING_ABANDON_S,
    LineMachine,
    LineState,
    MachineEvent,
)
from media.frames import FRAME_BYTES, FRAME_S

log = logging.getLogger(__name__)

OFF_HOOK_TIMEOUT_S = 10.0  # +VLS=1 closes a relay and may wait for line current: ~1 s, 10 s = stuck
CONNECT_TIMEOUT_S = 5.0  # +VRX/+VTR answer CONNECT at once; 5 s means the modem ignored it
STOP_VOICE_TIMEOUT_S = 1.5  # after <DLE>! the modem flushes and sends <DLE><ETX> + OK within ~100 ms
PLAY_LEAD_S = 0.1  # audio kept queued in the modem ahead of real time: covers loop jitter, bounds abort latency
PLAY_END_TIMEOUT_S = 3.0  # after <DLE><ETX> the modem plays out PLAY_LEAD_S of buffer, then OK
DIAL_TIMEOUT_S = 60.0  # ATD in voice mode: dial tone wait + dialling + call progress (~45 s of ringing)
MAX_CONNECT_WAIT = 4096  # bytes buffered while waiting for CONNECT before treating them as text
_URC_PREFIXES = ("RING", "DATE", "TIME", "NMBR", "NAME", "MESG", "DDN_NMBR", "DRON", "DROF", "REASON", "QUAL",
                 "REDIRECT")
_RAW_CID_PREFIXES = ("80", "04")
_CONNECT_RE = re.compile(rb"CONNECT[^\r\n]*\r")
_BARE_OK = b"\r\nOK\r\n"


class PortMode(StrEnum):
    COMMAND = "command"
    AWAIT_CONNECT = "awaiting CONNECT"
    VOICE = "voice data"  # +VRX/+VTR: audio and DLE events from the modem
    TRANSMIT = "voice transmit"  # +VTX: only DLE events (and the final OK as text) from the modem


class PlayResult(StrEnum):
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"


class DialResult(StrEnum):
    CONNECTED = "connected"
    BUSY = "busy"
    NO_CARRIER = "no carrier"
    NO_DIALTONE = "no dial tone"
    NO_ANSWER = "no answer"
    ERROR = "error"


_DIAL_FINALS = {"BUSY": DialResult.BUSY, "NO CARRIER": DialResult.NO_CARRIER,
                "NO DIALTONE": DialResult.NO_DIALTONE,  # the AT channel reports "NO DIAL TONE" spelt so too
                "NO ANSWER": DialResult.NO_ANSWER}


@dataclass(frozen=True, slots=True)
class ModemSettings:
    caller_id_raw: bool = False  # AT+VCID=2: raw SDMF/MDMF hex (we verify the checksum)
    silence_tenths: int = 50  # +VSD <sdi>: the modem reports <DLE>s/<DLE>q after 5 s
    no_voice_grace_s: float = NO_VOICE_GRACE_S
    long_silence_s: float = LONG_SILENCE_S
    ring_abandon_s: float = RING_ABANDON_S
    cid_wait_s: float | None = None  # None: the state machine's default
    rx_buffer_ms: int = RX_BUFFER_MS


class VoiceModem:
    def __init__(
        self,
        write: Callable[[bytes], None],
        on_event: Callable[[MachineEvent], None],
        *,
        profile: VoiceModemProfile | None = None,
        settings: ModemSettings = ModemSettings(),
        name: str = "analog",
        congested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.name = name
        self._write = write
        self._on_event = on_event
        self._congested = congested
        self.profile = profile
        self.settings = settings
        prefixes = _URC_PREFIXES + (_RAW_CID_PREFIXES if settings.caller_id_raw else ())
        self.channel = AtChannel(write, self._on_urc, urc_prefixes=prefixes, name=name)
        self.machine = self._new_machine(profile)
        self.mode = PortMode.COMMAND
        self.format: SampleFormat | None = None
        self.rate = 8000
        self.audio: ModemAudio | None = None
        self._converter: SampleConverter | None = None
        self._decoder: DleDecoder | None = None
        self._pre = bytearray()
        self._stream_end: asyncio.Future[None] | None = None
        self._final_ok: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._after_connect = PortMode.VOICE
        self._interrupt: tuple[frozenset[VoiceEvent], asyncio.Future[VoiceEvent]] | None = None
        self._loop = asyncio.get_running_loop()

    def _new_machine(self, profile: VoiceModemProfile | None) -> LineMachine:
        s = self.settings
        extra = {} if s.cid_wait_s is None else {"cid_wait_s": s.cid_wait_s}
        return LineMachine(
            name=self.name,
            silence_after_speech_is_s=profile.silence_after_speech_is_s if profile else False,
            no_voice_grace_s=s.no_voice_grace_s,
            long_silence_s=s.long_silence_s,
            ring_abandon_s=s.ring_abandon_s,
            **extra,
        )

    # ---- bytes in ----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.mode in (PortMode.VOICE, PortMode.TRANSMIT):
            self._feed_voice(data)
        elif self.mode is PortMode.AWAIT_CONNECT:
            self._feed_await_connect(data)
        else:
            self.channel.feed(data)
        self._reschedule()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.channel.connection_lost(exc)
        lost = PortLost(f"{self.name}: port lost")
        for fut in (self._stream_end, self._final_ok, self._interrupt[1] if self._interrupt else None):
            if fut is not None and not fut.done():
                fut.set_exception(lost)
        if self._timer is not None:
            self._timer.cancel()
        if self.audio is not None:
            self.audio.close()

    def _feed_await_connect(self, data: bytes) -> None:
        self._pre += data
        m = _CONNECT_RE.search(self._pre)
        if m is not None:
            end = m.end()
            if end == len(self._pre):
                return  # is a \n coming? decide with the next read
            if self._pre[end] == 0x0A:
                end += 1
            head, rest = bytes(self._pre[:end]), bytes(self._pre[end:])
            self._pre.clear()
            self._enter_voice()
            self.channel.feed(head)  # completes +VRX/+VTR with CONNECT
            if rest:
                self._feed_voice(rest)
            return
        # no CONNECT yet: hand over complete lines (echo, ERROR, RING ...), keep the tail
        cut = max(self._pre.rfind(b"\n"), self._pre.rfind(b"\r"))
        if len(self._pre) > MAX_CONNECT_WAIT:
            cut = len(self._pre) - 1
        if cut >= 0:
            head = bytes(self._pre[: cut + 1])
            del self._pre[: cut + 1]
            self.channel.feed(head)

    def _enter_voice(self) -> None:
        assert self.profile is not None
        self.mode = self._after_connect
        self._decoder = DleDecoder(sub_is_two_dles=self.profile.sub_is_two_dles)

    def _feed_voice(self, data: bytes) -> None:
        assert self._decoder is not None
        now = self._loop.time()
        for item in self._decoder.feed(data):
            if isinstance(item, Audio):
                if self._stream_end is not None and not self._stream_end.done() and _BARE_OK in item.data:
                    # some modems end the stream with a bare OK and no <DLE><ETX>: we are
                    # stopping, so this is that OK and not audio
                    self._leave_voice()
                    self._stream_end.set_result(None)
                    self.channel.feed(item.data[item.data.index(_BARE_OK):])
                    return
                if self.mode is PortMode.TRANSMIT:
                    self.channel.feed(item.data)  # +VTX: the modem sends no audio; this is its OK
                elif self._converter is not None and self.audio is not None:
                    pcm = self._converter.to_pcm(item.data)
                    self.audio.push_received(pcm)
                    self.machine.on_audio_level(energy(pcm))
                continue
            if item.kind is VoiceEvent.END_OF_STREAM:
                self._leave_voice()
                if self._stream_end is not None and not self._stream_end.done():
                    self._stream_end.set_result(None)
                else:
                    self._emit(self.machine.on_voice_event(item, now))
                rest = self._decoder.take_rest()
                if rest:
                    self.channel.feed(rest)
                return
            if self._interrupt is not None and item.kind in self._interrupt[0] and not self._interrupt[1].done():
                self._interrupt[1].set_result(item.kind)
            self._emit(self.machine.on_voice_event(item, now))

    def _leave_voice(self) -> None:
        self.mode = PortMode.COMMAND
        if self._decoder is not None:
            log.debug("%s: voice stream ended (%d audio bytes, %d events)", self.name,
                      self._decoder.audio_bytes, self._decoder.events)

    def _on_urc(self, urc: Urc) -> None:
        if urc.text.upper() == "OK":
            if self._final_ok is not None and not self._final_ok.done():
                self._final_ok.set_result(None)
            else:
                log.debug("%s: OK with no command pending (the end of an unrequested voice stream)", self.name)
            return
        self._emit(self.machine.on_line(urc.text, self._loop.time()))

    def _emit(self, events: list[MachineEvent]) -> None:
        for event in events:
            self._on_event(event)

    # ---- timers ------------------------------------------------------------------------
    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._emit(self.machine.on_timer(self._loop.time()))
        self._reschedule()

    # ---- commands ----------------------------------------------------------------------
    def use_profile(self, profile: VoiceModemProfile) -> None:
        """Adopt the (detected) chipset profile; the state machine follows its quirks."""
        self.profile = profile
        self.machine = self._new_machine(profile)

    async def best_effort(self, cmd: str) -> None:
        """A command some firmware lacks: an error result is logged, not raised."""
        try:
            await self.channel.command(cmd)
        except AtError as exc:
            log.info("%s: %s not supported (%s); carrying on", self.name, cmd, exc.final)

    async def answer(self) -> ModemAudio:
        """Go off hook and start the voice stream (+VTR full duplex, else +VRX)."""
        self.machine.transition(LineState.ANSWERING, "answer")
        await self.channel.command(self._profile.off_hook, prefix="VCON", final_on_prefix=True,
                                   timeout=OFF_HOOK_TIMEOUT_S)
        audio = await self._start_voice()
        self.machine.transition(LineState.VOICE, "voice stream up")
        return audio

    @property
    def _profile(self) -> VoiceModemProfile:
        if self.profile is None:
            raise DriverError(f"{self.name}: modem not initialised")
        return self.profile

    async def _start_voice(self) -> ModemAudio:
        assert self.format is not None
        self._converter = SampleConverter(self.format.encoding, self.rate)
        duplex = self._profile.full_duplex
        # the leg exists before the command: audio may follow CONNECT in the same read
        self.audio = ModemAudio(self._converter, send=self._write_audio if duplex else None,
                                congested=self._congested, max_ms=self.settings.rx_buffer_ms)
        for cmd in (("AT+VTR", "AT+VRX") if duplex else ("AT+VRX",)):
            try:
                await self._enter_data_state(cmd, PortMode.VOICE)
            except AtError as exc:
                if cmd == "AT+VTR":
                    log.warning("%s: full duplex refused (%s); receiving only", self.name, exc.final)
                    self.audio.receive_only()
                    continue
                raise
            break
        return self.audio

    async def _enter_data_state(self, cmd: str, mode: PortMode) -> None:
        self._after_connect = mode
        self.mode = PortMode.AWAIT_CONNECT
        self._pre.clear()
        try:
            await self.channel.command(cmd, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            self.mode = PortMode.COMMAND
            raise

    async def play(self, pcm: bytes, *, interrupt_on: frozenset[VoiceEvent] = frozenset(
            {VoiceEvent.HANDSET_OFF_HOOK, VoiceEvent.BUSY, VoiceEvent.DIAL_TONE, VoiceEvent.LOOP_BREAK}),
    ) -> PlayResult:
        """Play our PCM to the line (+VTX, off hook, command state), paced at the sample rate.

        An event in ``interrupt_on`` (an extension handset lifted, the far end gone)
        aborts with <DLE><CAN><DLE><ETX>; otherwise <DLE><ETX> lets the modem play out.
        Underruns (<DLE>u) are counted, not fatal.
        """
        if self.mode is not PortMode.COMMAND or self.format is None:
            raise DriverError(f"{self.name}: play() needs command state (stop the voice stream first)")
        conv = SampleConverter(self.format.encoding, self.rate)
        await self._enter_data_state("AT+VTX", PortMode.TRANSMIT)
        interrupted: asyncio.Future[VoiceEvent] = self._loop.create_future()
        self._interrupt = (interrupt_on, interrupted)
        self._final_ok = self._loop.create_future()
        try:
            start = self._loop.time()
            for index, offset in enumerate(range(0, len(pcm), FRAME_BYTES)):
                if interrupted.done():
                    break
                self._write(shield(conv.from_pcm(pcm[offset : offset + FRAME_BYTES])))
                delay = start + (index + 1) * FRAME_S - PLAY_LEAD_S - self._loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):  # pacing; wakes early on an interrupt
                            await asyncio.shield(interrupted)
            result = PlayResult.INTERRUPTED if interrupted.done() else PlayResult.COMPLETED
            if result is PlayResult.INTERRUPTED:
                log.info("%s: playback interrupted by %s", self.name, interrupted.result())
            self._write(DTE_ABORT_TX if result is PlayResult.INTERRUPTED else DTE_END_TX)
            async with asyncio.timeout(PLAY_END_TIMEOUT_S):
                await self._final_ok
            return result
        finally:
            self.mode = PortMode.COMMAND
            self._interrupt = None
            self._final_ok = None

    def _write_audio(self, data: bytes) -> None:
        if self.mode is not PortMode.VOICE:
            return
        try:
            self._write(data)
        except PortLost:
            pass  # the link's lost-future ends the call; the bridge must never see this

    async def stop_voice(self) -> None:
        """Leave the voice data state: <DLE>! then wait for <DLE><ETX> and OK."""
        if self.audio is not None:
            self.audio.close()
        if self.mode is not PortMode.VOICE:
            return
        self._stream_end = self._loop.create_future()
        self._final_ok = self._loop.create_future()
        try:
            # the profile's stop code first; a modem that ignores it still obeys "abort + end"
            for attempt, stop in enumerate((self._profile.stop_receive, DTE_ABORT_TX), start=1):
                self._write(stop)
                try:
                    async with asyncio.timeout(STOP_VOICE_TIMEOUT_S):
                        await asyncio.shield(self._stream_end)
                        await asyncio.shield(self._final_ok)
                    return
                except TimeoutError:
                    log.warning("%s: no end of voice data after %r (try %d)", self.name, stop, attempt)
            log.warning("%s: modem did not leave voice data; resyncing", self.name)
            self.mode = PortMode.COMMAND
            self.channel.needs_resync = True
        finally:
            self._stream_end = self._final_ok = None

    async def on_hook(self) -> None:
        try:
            await self.channel.command(self._profile.on_hook, urgent=True)
        except AtError as exc:
            log.warning("%s: %s refused (%s); trying ATH0", self.name, self._profile.on_hook, exc.final)
            await self.channel.command("ATH0", urgent=True)
        if self.machine.state is not LineState.IDLE:
            self.machine.transition(LineState.IDLE, "on hook")
        self._reschedule()

    async def dial(self, number: str) -> DialResult:
        """Dial out in voice mode; CONNECTED means the voice stream is up (``self.audio``)."""
        if not re.fullmatch(r"[0-9*#,+WwPpTt]+", number):
            raise ValueError(f"not a dialable number: {number!r}")
        self.machine.transition(LineState.DIALING, f"dial {number}")
        try:
            await self.channel.command(f"ATD{number};", timeout=DIAL_TIMEOUT_S, call_result=True, prefix="VCON",
                                       final_on_prefix=True)
        except AtError as exc:
            self.machine.transition(LineState.IDLE, exc.final)
            return _DIAL_FINALS.get(exc.final.upper(), DialResult.ERROR)
        await self._start_voice()
        self.machine.transition(LineState.VOICE, "dialled")
        return DialResult.CONNECTED
