"""The analog modem simulator seen from a plain serial link (no driver): bytes on the wire."""
import asyncio
import subprocess
import sys

import pytest

from drivers.serial_port import SerialLink
from drivers.sim.analog import AnalogModemSim, SimCaller
from drivers.voicemodem.dle import Audio, DleDecoder, DleEvent, VoiceEvent

WAIT_S = 5.0


class Wire:
    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    async def until(self, needle: bytes) -> bytes:
        async with asyncio.timeout(WAIT_S):
            while needle not in self.data:
                self.changed.clear()
                await self.changed.wait()
        out = bytes(self.data[: self.data.index(needle) + len(needle)])
        del self.data[: len(out)]
        return out


@pytest.fixture
async def host():
    sims, links = [], []

    async def connect(*args, **kwargs):
        sim = await AnalogModemSim(*args, **kwargs).start()
        wire = Wire()
        link = await SerialLink.open(sim.port, wire)
        sims.append(sim)
        links.append(link)
        return sim, link, wire

    yield connect
    for link in links:
        link.close()
    for sim in sims:
        await sim.close()


async def cmd(link, wire, text: str, final: bytes = b"OK\r\n") -> bytes:
    link.write(text.encode() + b"\r")
    return await wire.until(final)


async def test_echo_reset_and_forgotten_caller_id(host):
    sim, link, wire = await host("conexant")
    assert await cmd(link, wire, "AT") == b"AT\r\r\nOK\r\n"
    assert await cmd(link, wire, "ATE0") == b"ATE0\r\r\nOK\r\n"  # the ATE0 reply is still echoed
    assert await cmd(link, wire, "AT+VCID=1") == b"\r\nOK\r\n"
    assert await cmd(link, wire, "AT+VCID?") == b"\r\n1\r\n\r\nOK\r\n"  # bare value, no "+VCID:"
    assert await cmd(link, wire, "ATZ") == b"\r\nOK\r\n"
    assert await cmd(link, wire, "AT+VCID?") == b"AT+VCID?\r\r\n0\r\n\r\nOK\r\n"  # echo back on, CID forgotten
    assert await cmd(link, wire, "AT+BOGUS", b"ERROR\r\n") == b"AT+BOGUS\r\r\nERROR\r\n"


async def test_vsm_list_and_choice(host):
    sim, link, wire = await host("usr5637")
    reply = await cmd(link, wire, "AT+VSM=?")
    assert b'\r\n128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)\r\n' in reply
    assert (await cmd(link, wire, "AT+VSM=140,8000", b"ERROR\r\n")).endswith(b"\r\nERROR\r\n")
    await cmd(link, wire, "AT+VSM=128,8000")
    assert sim.vsm == (128, 8000)
    await cmd(link, wire, "AT+FCLASS=8")
    await cmd(link, wire, "AT+VLS=1")
    assert (await cmd(link, wire, "AT+VTR", b"ERROR\r\n")).endswith(b"ERROR\r\n")  # USR: half duplex


async def test_streamed_audio_is_shielded_and_stop_handshake(host):
    loud = bytes(range(0, 256, 2)) * 2  # as PCM: many samples whose 8-bit form is 0x10
    pcm = b"".join(int.to_bytes(((b - 128) * 256) & 0xFFFF, 2, "little") for b in loud)
    sim, link, wire = await host("conexant", audio=pcm)
    sim.stop_trailer = b"\x80\x80"
    for c in ("ATE0", "AT+FCLASS=8", "AT+VSM=1,8000", "AT+VLS=1"):
        await cmd(link, wire, c)
    await cmd(link, wire, "AT+VRX", b"CONNECT\r\n")
    await sim.wait_for(lambda: len(sim.sent_audio) >= len(loud))
    sim.send_event("b")
    link.write(b"\x10!")
    raw = await wire.until(b"\x10\x03")
    assert b"\x10\x10" in raw
    dec = DleDecoder()
    items = dec.feed(raw)
    audio = b"".join(i.data for i in items if isinstance(i, Audio))
    events = [i.kind for i in items if isinstance(i, DleEvent)]
    assert audio.startswith(bytes(sim.sent_audio[: len(loud)]))
    assert audio[: len(loud)] == loud and audio.endswith(b"\x80\x80")
    assert events[-2:] == [VoiceEvent.BUSY, VoiceEvent.END_OF_STREAM]
    assert await wire.until(b"OK\r\n") == b"\r\nOK\r\n"
    assert ("dle", "!") in sim.log


@pytest.mark.parametrize(("profile", "style", "raw", "expected_first"), [
    ("conexant", "us", False, b"\r\nRING\r\n"),
    ("conexant", "uk", False, b"\r\nDATE = 0314\r\n"),
    ("usr5637", "us", False, b"\r\nRING\r\n"),
    ("conexant", "us", True, b"\r\nRING\r\n"),
])
async def test_ring_styles(host, profile, style, raw, expected_first):
    sim, link, wire = await host(profile, time_scale=0.01)
    await cmd(link, wire, "ATE0")
    await cmd(link, wire, "AT+VCID=2" if raw else "AT+VCID=1")
    await sim.ring(SimCaller(), style=style, rings=2)
    async with asyncio.timeout(WAIT_S):
        while wire.data.count(b"RING\r\n") < 2:
            wire.changed.clear()
            await wire.changed.wait()
    data = bytes(wire.data)
    assert data.startswith(expected_first)
    if raw:
        assert b"\r\n802201083033313431323035020A35303335353531323334070A534D495448204A4F484ED3\r\n" in data
    elif profile == "usr5637":
        assert b"\r\nNMBR=5035551234\r\nNAME=SMITH JOHN\r\n" in data
    else:
        assert b"NMBR = 5035551234\r\nNAME = SMITH JOHN\r\n\r\n" in data
    marker = b"\r\n8022" if raw else b"NMBR"
    if style == "uk":
        assert data.index(marker) < data.index(b"RING")
    else:
        assert data.index(b"RING") < data.index(marker) < data.rindex(b"RING")


async def test_vanish_is_seen_as_port_loss(host):
    sim, link, wire = await host("conexant")
    sim.vanish()
    async with asyncio.timeout(WAIT_S):
        await asyncio.shield(link.lost)
    port = sim.reappear()  # a fresh pty (the kernel may reuse the number); powered on: echo is back
    wire2 = Wire()
    link2 = await SerialLink.open(port, wire2)
    try:
        assert await cmd(link2, wire2, "AT") == b"AT\r\r\nOK\r\n"
    finally:
        link2.close()


def test_cli_is_registered():
    out = subprocess.run([sys.executable, "-m", "drivers.sim", "analog", "--help"], capture_output=True, text=True,
                         timeout=30, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3]))
    assert out.returncode == 0 and "--profile" in out.stdout
