"""A fake GSM/LTE modem on a pty, speaking each profile's bytes (modems.md Part C).

Built on the same ``AtFramer`` as the driver. Behaviour model: echo on at power-up and
after ``ATZ`` (the ``ATE0`` reply is still echoed), ``\\r\\n``-framed replies, vendor
finals (Huawei ``COMMAND NOT SUPPORT``), SIM PIN and a SIM-busy window, SMS storage
with ``+CMTI`` indices, PDU send with the ``> `` prompt, USSD, incoming/outgoing calls
with each vendor's progress URCs, PCM audio on a second pty (320-byte frames every
20 ms), Huawei ``^RSSI``/``^BOOT`` noise, garbage injection, and unplug/replug under
new port names with the same IMEI.

Outgoing calls: ``ATD<number>[I];`` is accepted with ``OK`` (Huawei adds ``^ORIG:1,0``,
SIMCom with ``AT+CLCC=1`` a ``+CLCC`` stat 2 line, Quectel with ``AT^DSCI=1`` a
``^DSCI`` state 2 line). When a ``SimCallee`` is set (``callee`` default, ``callees``
per number) the far end then plays its part in the profile's own bytes
(drivers.sim.callee): alerting (``^CONF:1`` / ``+CLCC`` stat 3 / stat 3 in a ``+CLCC``
poll), the answer (``^CONN:1,0`` / ``VOICE CALL: BEGIN`` / stat 0 / ``^DSCI`` state 3),
busy / no answer / unreachable (``^CEND:1,0,104,<17|19|1>`` / ``BUSY`` / ``NO ANSWER``
/ ``NO CARRIER``, after ``^DSCI`` state 6 on Quectel), and an optional far-end hang-up; once the host has opened the PCM
path the callee's tone streams on the audio pty. With no callee the test drives the
call itself (``remote_answers``, ``caller_hangs_up``). ``send_dtmf`` is the far end pressing
a key: the profile's DTMF URC, or for Huawei (none) the tone in the call audio.

Tests drive it programmatically; ``script(command, chunks)`` makes the next reply to
``command`` (or to a PDU typed after ``> ``) exactly the given byte chunks, which is
how the transcripts in the shared cases are replayed byte for byte.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import wave
from dataclasses import dataclass
from datetime import datetime, timezone

from drivers.at.framer import AtFramer, Line
from drivers.gsm import pdu as pdu_codec
from drivers.gsm.profiles import PROFILES, ModemProfile
from drivers.sim import callee as callee_mod
from drivers.sim.callee import Outcome, SimCallee
from drivers.sim.gsm_model import ModemModel, SimCall
from drivers.sim.pty import PtyEndpoint
from media.dtmf import DIGITS as DTMF_DIGITS
from media.dtmf import dtmf_pcm

log = logging.getLogger(__name__)

FRAME_BYTES = 320  # 20 ms of 8 kHz s16le
FRAME_S = 0.020
NOISE_EVERY_S = 2.0  # Huawei ^RSSI/^BOOT period in the simulator (real modems: 2-10 s)


@dataclass(slots=True)
class SimIdentity:
    imei: str = "356938035643809"
    iccid: str = "89441000301234567890"
    imsi: str = "234150999999999"
    manufacturer: str = ""
    model: str = ""


class GsmSimulator:
    def __init__(self, profile: ModemProfile | str = "generic", *, identity: SimIdentity | None = None,
                 pin: str | None = None, storage: str = "SM", noise: bool = False,
                 callee: SimCallee | None = None) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.identity = identity or SimIdentity()
        self.model = ModemModel(self, pin=pin, storage=storage)
        self.framer = AtFramer()
        self.at: PtyEndpoint | None = None
        self.audio: PtyEndpoint | None = None
        self.received: list[str] = []  # command lines and PDUs the host sent, in order
        self.audio_received = bytearray()
        self._scripts: list[tuple[str, list[bytes]]] = []
        self._pdu_mode = False
        self._pdu_buf = bytearray()
        self._rx_event = asyncio.Event()
        self._audio_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.noise = noise
        self.pcm_source: bytes = b""
        self.audio_streaming = False
        self.frames_sent = 0
        self.inband = bytearray()  # key tones waiting to replace the caller's voice on the audio pty
        self.callee = callee  # the far end of outgoing calls; None: the test plays it by hand
        self.callees: dict[str, SimCallee] = {}  # per dialled number, overriding ``callee``

    # ---- life cycle -----------------------------------------------------------------
    def start(self) -> "GsmSimulator":
        self.at = PtyEndpoint(self._on_bytes, name="gsm-sim-at")
        if self.profile.has_audio_port:
            self.audio = PtyEndpoint(self._on_audio, name="gsm-sim-audio")
        self._spawn(self._noise_loop(), "noise")
        return self

    @property
    def port(self) -> str:
        assert self.at is not None
        return self.at.port

    @property
    def audio_port(self) -> str | None:
        return self.audio.port if self.audio else None

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for ep in (self.at, self.audio):
            if ep is not None:
                ep.close()

    def vanish(self) -> None:
        """USB unplug: both ptys disappear; a call in progress is gone."""
        self.audio_streaming = False
        self.model.power_off()
        for ep in (self.at, self.audio):
            if ep is not None:
                ep.close()

    def replug(self) -> tuple[str, str | None]:
        """USB re-enumeration: new pty names, fresh boot (echo on), same IMEI and SMS store."""
        assert self.at is not None
        self.model.power_on()
        self.framer = AtFramer()
        self._pdu_mode = False
        self.at.reopen()
        if self.audio is not None:
            self.audio.reopen()
        self.send(self.model.boot_urcs())
        return self.port, self.audio_port

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"gsm-sim {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- bytes ------------------------------------------------------------------------
    def send(self, data: bytes | list[bytes]) -> None:
        if self.at is None:
            return
        for chunk in [data] if isinstance(data, bytes) else data:
            self.at.write(chunk)

    def urc(self, text: str) -> None:
        self.send(f"\r\n{text}\r\n".encode())

    def inject_garbage(self, data: bytes) -> None:
        self.send(data)

    def script(self, command: str, chunks: list[bytes]) -> None:
        """The next time the host sends ``command`` (exact text), reply with exactly ``chunks``."""
        self._scripts.append((command, list(chunks)))

    def _on_bytes(self, data: bytes) -> None:
        while data:
            if self._pdu_mode:
                cut = min((i for i in (data.find(b"\x1a"), data.find(b"\x1b")) if i >= 0), default=-1)
                if cut < 0:
                    self._pdu_buf += data
                    return
                self._pdu_buf += data[:cut]
                text = self._pdu_buf.decode("ascii", "replace").strip()
                self._pdu_mode, self._pdu_buf = False, bytearray()
                aborted = data[cut] == 0x1B
                data = data[cut + 1 :]
                self._record(text)
                if not self._scripted(text):
                    if self.model.echo:
                        self.send(text.encode() + b"\r\n")
                    self.send(self.model.pdu_entered(text, aborted))
                continue
            cut = data.find(b"\r")
            chunk, data = (data, b"") if cut < 0 else (data[: cut + 1], data[cut + 1 :])
            for item in self.framer.feed(chunk):
                if isinstance(item, Line):
                    self._command(item.text)

    def _record(self, text: str) -> None:
        self.received.append(text)
        self._rx_event.set()

    def _command(self, text: str) -> None:
        self._record(text)
        if self._scripted(text):  # scripted replies carry their own echo bytes, as captured
            return
        if self.model.echo:
            self.send(text.encode() + b"\r")
        reply = self.model.command(text)
        self.send(reply)

    def _scripted(self, text: str) -> bool:
        for i, (cmd, chunks) in enumerate(self._scripts):
            if cmd == text:
                del self._scripts[i]
                self.send(chunks)
                if any(c.endswith(b"> ") or c.endswith(b">\r\n") for c in chunks):
                    self._pdu_mode = True
                self.model.after_script(text)
                return True
        return False

    def enter_pdu_mode(self) -> None:
        self._pdu_mode = True

    async def wait_received(self, text: str, timeout: float = 3.0, *, count: int = 1) -> None:
        """Wait until the host has sent ``text`` (a command or a PDU) ``count`` times."""
        async with asyncio.timeout(timeout):
            while self.received.count(text) < count:
                self._rx_event.clear()
                await self._rx_event.wait()

    async def wait_matching(self, pattern: str, timeout: float = 3.0) -> str:
        rx = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.received:
                    if rx.fullmatch(line):
                        return line
                self._rx_event.clear()
                await self._rx_event.wait()

    # ---- audio ----------------------------------------------------------------------
    def _on_audio(self, data: bytes) -> None:
        if self.audio_streaming:
            self.audio_received += data
            self._audio_event.set()

    async def wait_audio(self, nbytes: int, timeout: float = 3.0) -> bytes:
        """Wait until the host has written ``nbytes`` of uplink PCM during the call."""
        async with asyncio.timeout(timeout):
            while len(self.audio_received) < nbytes:
                self._audio_event.clear()
                await self._audio_event.wait()
        return bytes(self.audio_received)

    def load_wav(self, path: str) -> None:
        with wave.open(path, "rb") as w:
            if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (8000, 2, 1):
                raise ValueError("the simulator plays 8 kHz mono 16-bit WAV files")
            self.pcm_source = w.readframes(w.getnframes())

    def start_audio(self) -> None:
        if self.audio is None or self.audio_streaming:
            return
        self.audio_streaming = True
        self._spawn(self._audio_loop(), "audio")

    def stop_audio(self) -> None:
        self.audio_streaming = False
        self.inband.clear()

    async def _audio_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        call = self.model.call
        src = (call.pcm if call is not None and call.pcm else self.pcm_source) or bytes(FRAME_BYTES)
        while self.audio_streaming and self.audio is not None and self.audio.is_open:
            off = (n * FRAME_BYTES) % max(len(src) - len(src) % FRAME_BYTES, FRAME_BYTES)
            frame = src[off : off + FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")
            if self.inband:  # a key is pressed: the tone replaces the voice, as on a handset
                frame = bytes(self.inband[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\x00")
                del self.inband[:FRAME_BYTES]
            self.audio.write(frame)
            self.frames_sent += 1
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))  # pacing from start + index

    async def _noise_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(NOISE_EVERY_S)
            if self.noise and self.profile.key == "huawei" and self.model.curc and self.model.powered:
                n += 1
                self.urc(f"^RSSI:{14 + n % 3}" if n % 3 else "^BOOT:35323129,0,0,0,26")

    # ---- network-side actions --------------------------------------------------------
    def place_call(self, number: str | None, *, validity: int = 0, rings: int = 1) -> None:
        self.model.incoming_call(number, validity)
        for _ in range(rings):
            self.ring()

    def ring(self) -> None:
        self.send(self.model.ring_bytes())

    def caller_hangs_up(self) -> None:
        self.send(self.model.remote_hangup())

    def send_dtmf(self, digit: str) -> None:
        """The far end presses ``digit`` during the answered call, reported the profile's way:
        its DTMF URC on the AT port, or (Huawei: no URC) the tone pair in the call audio,
        ``media.dtmf.dtmf_pcm`` (100 ms tone, 100 ms pause) in place of the caller's voice."""
        digit = digit.upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if self.model.call is None or self.model.call.state != "active":
            raise ValueError("no answered call to press a key in")
        if self.profile.dtmf_urc is None:
            self.inband += dtmf_pcm(digit)
        else:
            self.send(self.model.dtmf_urc(digit))

    def remote_answers(self) -> None:
        self.send(self.model.remote_answer())

    def outgoing_call(self, call: SimCall) -> None:
        """The model accepted an ATD: let the configured callee play the far end."""
        who = callee_mod.pick(self.callees, self.callee, call.number or "")
        if who is None:
            return
        call.pcm = who.pcm()
        self._spawn(self._callee(call, who), "callee")

    async def _callee(self, call: SimCall, who: SimCallee) -> None:
        # the far end's timeline, not synchronisation: each step checks the call is still this one
        await asyncio.sleep(who.alert_after_s)
        if self.model.call is not call:
            return
        self.send(self.model.remote_alerting())
        await asyncio.sleep(who.answer_after_s - who.alert_after_s)
        if self.model.call is not call:
            return
        if who.outcome is not Outcome.ANSWER:
            self.send(self.model.dial_failed(who.outcome.value))
            return
        self.send(self.model.remote_answer())
        if who.hangup_after_s is None:
            return
        await asyncio.sleep(who.hangup_after_s)
        if self.model.call is call:
            self.send(self.model.remote_hangup())

    def deliver_sms(self, hex_pdu: str, *, storage: str | None = None) -> int:
        index = self.model.store(hex_pdu, storage)
        self.urc(f'+CMTI: "{storage or self.model.storage}",{index}')
        return index

    def deliver_text(self, sender: str, text: str, when: datetime | None = None) -> int:
        out = pdu_codec.encode_deliver(sender, text, when or datetime.now(timezone.utc))
        return self.deliver_sms(out.hex)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m drivers.sim gsm", description="GSM modem simulator on a pty")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="generic")
    ap.add_argument("--imei", default=SimIdentity.imei)
    ap.add_argument("--pin", default=None, help="SIM PIN the driver must enter")
    ap.add_argument("--wav", default=None, help="8 kHz mono 16-bit WAV played as the caller's audio")
    ap.add_argument("--call", default=None, help="caller number for an incoming call")
    ap.add_argument("--call-after", type=float, default=5.0)
    ap.add_argument("--sms", default=None, help="text of an SMS delivered after --sms-after seconds")
    ap.add_argument("--sms-from", default="+447700900123")
    ap.add_argument("--sms-after", type=float, default=5.0)
    ap.add_argument("--noise", action="store_true", help="emit Huawei ^RSSI/^BOOT noise")
    callee_mod.add_arguments(ap)
    args = ap.parse_args(argv)

    async def run() -> None:
        sim = GsmSimulator(args.profile, identity=SimIdentity(imei=args.imei), pin=args.pin, noise=args.noise,
                           callee=callee_mod.from_arguments(args)).start()
        if args.wav:
            sim.load_wav(args.wav)
        print(f"profile {sim.profile.key}: AT port {sim.port}" + (f", audio port {sim.audio_port}" if sim.audio_port else ""),
              flush=True)
        loop = asyncio.get_running_loop()
        if args.call:
            loop.call_later(args.call_after, sim.place_call, args.call)
        if args.sms:
            loop.call_later(args.sms_after, sim.deliver_text, args.sms_from, args.sms)
        try:
            await asyncio.Event().wait()
        finally:
            sim.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0
