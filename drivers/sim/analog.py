"""A fake V.253 analog voice modem on a pty (``python -m drivers.sim analog``).

What it reproduces (modems.md B, Part C item 13): echo on at power-up and after
``ATZ`` (which also forgets ``+VCID`` on Conexant), ``\\r\\n``-framed results, the
``AT+VSM=?`` option list of the chosen chipset, ``+VLS``/``ATA``/``ATD`` with ``OK`` or
``VCON``, ``+VRX``/``+VTX``/``+VTR`` data states with DLE shielding both ways (host audio
is unshielded with the driver's own ``DleDecoder``), the ``<DLE>!`` handshake
(trailing audio, ``<DLE><ETX>``, ``OK``), rings with caller ID in US style (between
RING 1 and 2) or UK style (before RING 1), formatted with or without spaces round
``=`` or raw MDMF hex, DTMF (IS-101 shielded or bare), busy/dial-tone/silence events,
audio streamed from a WAV at the modem's pace, and vanishing mid-call (pty closed).
Outgoing calls: with a ``SimCallee`` (``callee`` default, ``callees`` per number) the
dialled far end answers, is busy, does not answer or hangs up later
(drivers.sim.analog_callee); without one ``ATD`` answers ``dial_result`` at once.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import wave
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from drivers.sim import callee as callee_mod
from drivers.sim.analog_callee import AnalogFarEnd
from drivers.sim.callee import SimCallee
from drivers.sim.pty import PtyEndpoint
from drivers.voicemodem.callerid import encode_mdmf
from drivers.voicemodem.dle import DleDecoder, Direction, DleEvent, VoiceEvent, shield
from drivers.voicemodem.formats import SampleConverter, parse_vsm_options
from media.frames import FRAME_BYTES, FRAME_S, SAMPLE_RATE

log = logging.getLogger(__name__)

MAX_RECEIVED_AUDIO = 2 * 1024 * 1024  # audio kept for inspection each way (over 4 min of 8-bit audio)
MAX_LOG = 10_000  # events kept for tests; a stand-alone run must not grow without bound
US_CID_DELAY_S = 2.5  # Bell 202 burst ends ~0.5 s after the 2 s ring
RING_PERIOD_S = 6.0  # US cadence: 2 s on, 4 s off
UK_CID_LEAD_S = 0.5  # BT sends V.23 caller ID before the first ring


@dataclass(frozen=True, slots=True)
class SimProfile:
    name: str
    ati0: str
    vsm_options: tuple[str, ...]
    full_duplex: bool = True
    cid_spaces: bool = True  # "NMBR = x" (Rockwell/Conexant) vs "NMBR=x" (USR)
    forgets_cid_on_reset: bool = True
    bare_vcid_query: bool = True  # AT+VCID? answers "0" without "+VCID:" (Conexant)
    off_hook_result: str = "OK"


CONEXANT = SimProfile(
    name="conexant",
    ati0="56000",
    vsm_options=('1,"UNSIGNED PCM",8,0,(7200,8000,11025),(0),(0)', '129,"IMA ADPCM",4,0,(7200,8000,11025),(0),(0)',
                 '130,"UNSIGNED PCM",8,0,(8000),(0),(0)', '140,"2-BIT ADPCM",2,0,(8000),(0),(0)'),
)
USR_5637 = SimProfile(
    name="usr5637",
    ati0="5601",
    vsm_options=('1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)', '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)',
                 '129,"ADPCM",4,0,(7200,8000),(0),(0)', '130,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',
                 '131,"ULAW",8,0,(7200,8000),(0),(0)', '132,"ALAW",8,0,(7200,8000),(0),(0)',
                 '133,"LINEAR",16,0,(7200,8000),(0),(0)'),
    full_duplex=False,
    cid_spaces=False,
    forgets_cid_on_reset=False,
    bare_vcid_query=False,
)
AGERE = SimProfile(
    name="agere",
    ati0="AEIGPM560LKTF1",
    vsm_options=('128,"8-BIT LINEAR",8,0,(7200,8000,11025),(0),(0)', '129,"16-BIT LINEAR",16,0,(7200,8000,11025),(0),(0)',
                 '130,"ULAW",8,0,(7200,8000,11025),(0),(0)', '131,"ALAW",8,0,(7200,8000,11025),(0),(0)',
                 '132,"IMA ADPCM",4,0,(7200,8000,11025),(0),(0)'),
    forgets_cid_on_reset=False,
    bare_vcid_query=False,
    off_hook_result="VCON",
)
SIM_PROFILES = {p.name: p for p in (CONEXANT, USR_5637, AGERE)}


class SimMode(StrEnum):
    COMMAND = "command"
    VRX = "voice receive"
    VTX = "voice transmit"
    VTR = "voice full duplex"


@dataclass(frozen=True, slots=True)
class SimCaller:
    number: str | None = "5035551234"  # None: withheld ("P") or unavailable ("O"), see absent
    name: str | None = "SMITH JOHN"
    absent: str = "P"
    date: str = "0314"
    time: str = "1205"


def load_wav(path: str) -> bytes:
    """A WAV file as our PCM (8 kHz mono s16le); other rates/channels are converted."""
    from drivers.voicemodem.formats import audioop  # the same guarded stdlib import

    with wave.open(path, "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        data = w.readframes(w.getnframes())
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    if rate != SAMPLE_RATE:
        data, _ = audioop.ratecv(data, 2, 1, rate, SAMPLE_RATE, None)
    return data


class AnalogModemSim:
    def __init__(self, profile: SimProfile | str = CONEXANT, *, audio: bytes | None = None,
                 time_scale: float = 1.0, dial_result: str = "VCON", callee: SimCallee | None = None,
                 vcon_at_once: bool = False) -> None:
        self.profile = SIM_PROFILES[profile] if isinstance(profile, str) else profile
        self.audio = audio  # our PCM to stream in +VRX/+VTR; None: stream nothing on its own
        self.time_scale = time_scale
        self.dial_result = dial_result
        self.callee = callee  # the far end of dialled calls; None: ATD answers dial_result at once
        self.callees: dict[str, SimCallee] = {}  # per dialled number, overriding ``callee``
        self.vcon_at_once = vcon_at_once  # chipset answers ATD with VCON before the far end answers
        self.dialled: list[str] = []  # numbers the host dialled, as sent
        self.far_end: AnalogFarEnd | None = None
        self.stop_trailer = b""  # audio sent between <DLE>! and <DLE><ETX>
        self.stop_reply_delay_s = 0.0  # how long the modem takes to answer <DLE>! (0: at once)
        self.ignores_stop_receive = False  # a modem that only leaves voice data on <DLE><ETX> (bare OK)
        self.log: deque[tuple[str, str]] = deque(maxlen=MAX_LOG)  # ("cmd", "AT+VLS=1"), ("dle", "!") ...
        self.received_audio = bytearray()  # host audio (unshielded, modem format)
        self.sent_audio = bytearray()  # streamed audio before shielding (modem format)
        self.pty: PtyEndpoint | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stream: asyncio.Task[None] | None = None
        self._power_on()

    def _power_on(self) -> None:
        self.echo = True
        self.cid_mode = 0
        self.mode = SimMode.COMMAND
        self.off_hook = False
        self.voice_class = 0
        self.vsm: tuple[int, int] | None = None
        self._cmd_buf = bytearray()
        self._decoder: DleDecoder | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> "AnalogModemSim":
        self.pty = PtyEndpoint(self._on_data, name=f"analog-sim-{self.profile.name}")
        return self

    async def __aenter__(self) -> "AnalogModemSim":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> str:
        assert self.pty is not None
        return self.pty.port

    async def close(self) -> None:
        self._stop_stream()
        self._end_far_end()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if self.pty is not None:
            self.pty.close()

    def vanish(self) -> None:
        """USB re-enumeration: the port disappears mid-whatever."""
        self._stop_stream()
        self._end_far_end()
        self._note("sim", "vanished")
        assert self.pty is not None
        self.pty.close()

    def reappear(self) -> str:
        """The modem comes back (new pty name), freshly powered on."""
        assert self.pty is not None
        self._power_on()
        port = self.pty.reopen()
        self._note("sim", "reappeared")
        return port

    # ---- observation -------------------------------------------------------------------
    def _note(self, kind: str, text: str) -> None:
        self.log.append((kind, text))
        self._pulse()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def commands(self) -> list[str]:
        return [text for kind, text in self.log if kind == "cmd"]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    # ---- output ------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        if self.pty is not None:
            self.pty.write(data)

    def _result(self, *lines: str) -> None:
        self.send_raw(b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))
        self._note("result", lines[-1])

    # ---- host bytes ----------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        while data:
            if self.mode is SimMode.COMMAND or self._decoder is None or self._decoder.ended:
                self._on_command_bytes(data)
                return
            for item in self._decoder.feed(data):
                if isinstance(item, DleEvent):
                    self._on_host_dle(item)
                elif self.mode in (SimMode.VTX, SimMode.VTR):
                    room = MAX_RECEIVED_AUDIO - len(self.received_audio)
                    self.received_audio += item.data[: max(room, 0)]
                    self._pulse()
            data = self._decoder.take_rest()

    def _on_host_dle(self, event: DleEvent) -> None:
        self._note("dle", event.code)
        if event.kind is VoiceEvent.STOP_RECEIVE and self.ignores_stop_receive:
            return
        if event.kind is VoiceEvent.STOP_RECEIVE or event.kind is VoiceEvent.END_OF_STREAM:
            self._stop_stream()
            if event.kind is VoiceEvent.STOP_RECEIVE:
                assert self._decoder is not None
                self._decoder.ended = True  # nothing more is voice data from the host
                if self.stop_reply_delay_s > 0:
                    self._spawn(self._delayed_stop_reply(), "stop-reply")
                    return
                self.send_raw(self.stop_trailer + b"\x10\x03")
            self._result("OK")
            self._note("sent", "end of voice data")
            self.mode = SimMode.COMMAND
            self._note("mode", self.mode)

    async def _delayed_stop_reply(self) -> None:
        await asyncio.sleep(self.stop_reply_delay_s)  # the modem flushing its buffer
        self.send_raw(self.stop_trailer + b"\x10\x03")
        self._result("OK")
        self._note("sent", "end of voice data")
        self.mode = SimMode.COMMAND
        self._note("mode", self.mode)

    def _on_command_bytes(self, data: bytes) -> None:
        if self.far_end is not None and self.far_end.pending:
            self.far_end.abort()  # any byte from the host aborts a pending dial
            self._note("sim", "dial aborted by the host")
        self._cmd_buf += data
        while True:
            idx = self._cmd_buf.find(b"\r")
            if idx < 0:
                if len(self._cmd_buf) > 1024:
                    self._cmd_buf.clear()
                return
            raw = bytes(self._cmd_buf[:idx])
            del self._cmd_buf[: idx + 1]
            text = raw.replace(b"\n", b"").decode("ascii", errors="replace").strip()
            if not text:
                continue
            if self.echo:
                self.send_raw(text.encode() + b"\r")
            self._note("cmd", text)
            self._command(text)
            if self.mode is not SimMode.COMMAND:
                rest = bytes(self._cmd_buf)
                self._cmd_buf.clear()
                if rest:
                    self._on_data(rest)
                return

    def _command(self, text: str) -> None:
        cmd = text.upper()
        if not cmd.startswith("AT"):
            self._result("ERROR")
            return
        body = cmd[2:]
        if body in ("", "&F", "I3", "+VIT=0", "+IFC=2,2", "+VNH=1", "-SCID=1") or body.startswith(("+VGT", "+VGR")):
            self._result("OK")
        elif body in ("Z", "Z0"):
            self.echo = True  # the stored profile has echo on
            if self.profile.forgets_cid_on_reset:
                self.cid_mode = 0
            self._result("OK")
        elif body in ("E0", "E1"):
            self.echo = body == "E1"
            self._result("OK")
        elif body in ("I", "I0"):
            self._result(self.profile.ati0, "OK")
        elif body.startswith(("+FCLASS=", "#CLS=")):
            self.voice_class = int(body.split("=")[1] or 0) if body.split("=")[1].isdigit() else 0
            self._result("OK")
        elif body in ("+VCID?", "#CID?"):
            value = str(self.cid_mode) if self.profile.bare_vcid_query else f"{body[:-1]}: {self.cid_mode}"
            self._result(value, "OK")
        elif body.startswith(("+VCID=", "#CID=")) and body[-1] in "012":
            self.cid_mode = int(body[-1])
            self._result("OK")
        elif body == "+VSM=?":
            self._result(*self.profile.vsm_options, "OK")
        elif body.startswith("+VSM="):
            self._set_vsm(body[5:])
        elif body.startswith("+VSD="):
            self._result("OK")
        elif body.startswith("+VLS="):
            self.off_hook = body[5:] not in ("0", "")
            if not self.off_hook:
                self._end_far_end()
            self._result(self.profile.off_hook_result if self.off_hook else "OK")
        elif body == "A":
            self.off_hook = True
            self._result("VCON")
        elif body in ("H", "H0"):
            self.off_hook = False
            self._end_far_end()
            self._result("OK")
        elif body.startswith("D"):
            self._dial(body[1:].rstrip(";").strip())
        elif body in ("+VRX", "+VTX", "+VTR"):
            self._start_voice(body)
        else:
            self._result("ERROR")

    def _set_vsm(self, args: str) -> None:
        parts = args.split(",")
        offered = {f.cml: f for f in parse_vsm_options(self.profile.vsm_options)}
        try:
            cml, rate = int(parts[0]), int(parts[1]) if len(parts) > 1 else SAMPLE_RATE
        except ValueError:
            self._result("ERROR")
            return
        fmt = offered.get(cml)
        if fmt is None or not fmt.supports(rate):
            self._result("ERROR")
            return
        self.vsm = (cml, rate)
        self._result("OK")

    def _dial(self, number: str) -> None:
        self.dialled.append(number)
        self._note("dial", number)
        who = callee_mod.pick(self.callees, self.callee, number)
        if who is None or self.dial_result != "VCON":
            self.off_hook = self.dial_result in ("VCON", "OK")
            self._result(self.dial_result)
            return
        self._end_far_end()
        self.far_end = AnalogFarEnd(self, number, who)

    def _end_far_end(self) -> None:
        if self.far_end is not None:
            self.far_end.stop()
            self.far_end = None

    def _start_voice(self, body: str) -> None:
        if self.voice_class != 8 or self.vsm is None or (body == "+VTR" and not self.profile.full_duplex):
            self._result("ERROR")
            return
        if body != "+VTX" and not self.off_hook:
            self._result("ERROR")
            return
        self.mode = {"+VRX": SimMode.VRX, "+VTX": SimMode.VTX, "+VTR": SimMode.VTR}[body]
        self._decoder = DleDecoder(direction=Direction.FROM_DTE)
        self._result("CONNECT")
        self._note("mode", self.mode)
        if self.mode is not SimMode.VTX and (self.far_end is not None or self.audio is not None):
            self._stream = self._spawn(self._stream_audio(self.audio or b""), "stream")

    # ---- scripted behaviour ---------------------------------------------------------------
    def converter(self) -> SampleConverter:
        """The converter for the negotiated format (tests use it to build expected audio)."""
        assert self.vsm is not None
        fmt = {f.cml: f for f in parse_vsm_options(self.profile.vsm_options)}[self.vsm[0]]
        return SampleConverter(fmt.encoding, self.vsm[1])

    async def _stream_audio(self, pcm: bytes) -> None:
        conv = self.converter()
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        while self.mode in (SimMode.VRX, SimMode.VTR):
            far_end = self.far_end
            chunk = far_end.frame(index) if far_end is not None else pcm[index * FRAME_BYTES : (index + 1) * FRAME_BYTES]
            if len(chunk) < FRAME_BYTES:
                chunk = chunk + bytes(FRAME_BYTES - len(chunk))  # keep streaming silence after the file
            data = conv.from_pcm(chunk)
            if len(self.sent_audio) < MAX_RECEIVED_AUDIO:
                self.sent_audio += data
            self.send_raw(shield(data))
            self._pulse()
            index += 1
            await asyncio.sleep(max(0.0, start + index * FRAME_S - loop.time()))  # the modem's sample clock

    def _stop_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _spawn(self, coro, name: str) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro, name=f"analog-sim:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def caller_id_bytes(self, caller: SimCaller) -> bytes:
        if self.cid_mode == 2:
            absent = caller.absent
            hexline = encode_mdmf(datetime=caller.date + caller.time, number=caller.number, name=caller.name,
                                  number_absent=None if caller.number else absent,
                                  name_absent=None if caller.name else absent)
            return b"\r\n" + hexline.encode() + b"\r\n"
        eq = " = " if self.profile.cid_spaces else "="
        fields = (("DATE", caller.date), ("TIME", caller.time), ("NMBR", caller.number or caller.absent),
                  ("NAME", caller.name or caller.absent))
        return b"\r\n" + b"".join(f"{t}{eq}{v}\r\n".encode() for t, v in fields) + b"\r\n"

    async def ring(self, caller: SimCaller | None = None, *, style: str = "us", rings: int = 3) -> None:
        """Ring ``rings`` times (stops early once answered); caller ID only if enabled."""
        ts = self.time_scale
        cid = self.caller_id_bytes(caller) if caller is not None and self.cid_mode else b""
        if style == "uk" and cid:
            self.send_raw(cid)
            await asyncio.sleep(UK_CID_LEAD_S * ts)
        for n in range(rings):
            if self.off_hook or self.pty is None or not self.pty.is_open:
                return
            self._result("RING")
            self._note("sent", "RING")
            if n == 0 and style == "us" and cid:
                await asyncio.sleep(US_CID_DELAY_S * ts)
                self.send_raw(cid)
                self._note("sent", "CID")
                await asyncio.sleep((RING_PERIOD_S - US_CID_DELAY_S) * ts)
            else:
                await asyncio.sleep(RING_PERIOD_S * ts)

    def send_dtmf(self, digit: str, *, shielded: bool = True, repeats: int = 2) -> None:
        code = digit.encode()
        self.send_raw(b"\x10/" + (b"\x10" + code) * repeats + b"\x10~" if shielded else b"\x10" + code)
        self._note("sent", f"dtmf {digit}")

    def send_event(self, code: str) -> None:
        """A DLE event: "b" busy, "d" dial tone, "s" silence, "q" quiet, "l" loop break ..."""
        self.send_raw(b"\x10" + code.encode())
        self._note("sent", f"dle {code}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.sim analog", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(SIM_PROFILES), default="conexant")
    parser.add_argument("--wav", help="audio streamed to the host after it answers")
    parser.add_argument("--ring-every", type=float, default=0.0, help="seconds between calls (0: never ring)")
    parser.add_argument("--style", choices=("us", "uk"), default="us")
    parser.add_argument("--number", default="5035551234")
    parser.add_argument("--name", default="SMITH JOHN")
    parser.add_argument("--vcon-at-once", action="store_true", help="answer ATD with VCON before the callee answers")
    callee_mod.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        audio = load_wav(args.wav) if args.wav else None
        async with AnalogModemSim(args.profile, audio=audio, callee=callee_mod.from_arguments(args),
                                  vcon_at_once=args.vcon_at_once) as sim:
            print(f"analog modem ({args.profile}) on {sim.port}", flush=True)
            caller = SimCaller(number=args.number or None, name=args.name or None)
            while True:
                if args.ring_every > 0:
                    await asyncio.sleep(args.ring_every)
                    if sim.mode is SimMode.COMMAND and not sim.off_hook:
                        await sim.ring(caller, style=args.style)
                else:
                    await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["AnalogModemSim", "SimCaller", "SimProfile", "SIM_PROFILES", "load_wav", "main"]
