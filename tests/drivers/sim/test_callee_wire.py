"""The simulated far end of outgoing calls, seen from a plain serial link (no driver):
the exact bytes each simulated modem sends after ``ATD``."""
import asyncio

import numpy as np
import pytest

from drivers.serial_port import SerialLink
from drivers.sim.callee import Outcome, SimCallee
from drivers.sim.gsm import GsmSimulator
from drivers.voicemodem.dle import Audio, DleDecoder, DleEvent, VoiceEvent

from .test_analog import Wire, cmd, host  # noqa: F401  (fixture)

QUICK = dict(alert_after_s=0.05, answer_after_s=0.2)


@pytest.fixture
async def gsm_host():
    made = []

    async def connect(profile, **kwargs):
        sim = GsmSimulator(profile, **kwargs).start()
        wire = Wire()
        link = await SerialLink.open(sim.port, wire)
        made.append((sim, link))
        return sim, link, wire

    yield connect
    for sim, link in made:
        await link.wait_closed()
        sim.close()


@pytest.mark.parametrize("profile,after_ok,alerting,answer", [
    ("huawei", b"\r\n^ORIG:1,0\r\n", b"\r\n^CONF:1\r\n", b"\r\n^CONN:1,0\r\n"),
    ("generic", b"", b"", b""),
])
async def test_gsm_answered_bytes(gsm_host, profile, after_ok, alerting, answer):
    sim, link, wire = await gsm_host(profile, callee=SimCallee(hangup_after_s=0.2, **QUICK))
    got = await cmd(link, wire, "ATD+447700900123;", b"OK\r\n" + after_ok)
    assert got == b"ATD+447700900123;\r\r\nOK\r\n" + after_ok  # echo on at power-up
    if profile == "huawei":
        assert await wire.until(b"^CONN:1,0\r\n") == alerting + answer
        assert await wire.until(b"\r\n") + await wire.until(b"\r\n") == b"\r\n^CEND:1,0,104,16\r\n"
    else:
        link.write(b"AT+CLCC\r")
        await wire.until(b"OK\r\n")  # dialing or alerting, depending on the moment
        assert await wire.until(b"NO CARRIER\r\n") == b"\r\nNO CARRIER\r\n"  # the far end hung up
    await link.wait_closed()


async def test_simcom_clcc_urcs_and_voice_call_begin(gsm_host):
    sim, link, wire = await gsm_host("simcom", callee=SimCallee(**QUICK))
    await cmd(link, wire, "AT+CLCC=1")
    got = await cmd(link, wire, "ATD+447700900123;", b'145\r\n')
    assert got == b'ATD+447700900123;\r\r\nOK\r\n\r\n+CLCC: 1,0,2,0,0,"+447700900123",145\r\n'
    assert await wire.until(b"145\r\n") == b'\r\n+CLCC: 1,0,3,0,0,"+447700900123",145\r\n'
    assert await wire.until(b"145\r\n") == b'\r\nVOICE CALL: BEGIN\r\n\r\n+CLCC: 1,0,0,0,0,"+447700900123",145\r\n'
    await link.wait_closed()


@pytest.mark.parametrize("profile,outcome,expected", [
    ("huawei", Outcome.BUSY, b"\r\n^CEND:1,0,104,17\r\n"),
    ("huawei", Outcome.NO_ANSWER, b"\r\n^CEND:1,0,104,19\r\n"),
    ("huawei", Outcome.UNREACHABLE, b"\r\n^CEND:1,0,104,1\r\n"),
    ("generic", Outcome.BUSY, b"\r\nBUSY\r\n"),
    ("quectel", Outcome.NO_ANSWER, b"\r\nNO ANSWER\r\n"),
    ("generic", Outcome.UNREACHABLE, b"\r\nNO CARRIER\r\n"),
])
async def test_gsm_failures(gsm_host, profile, outcome, expected):
    sim, link, wire = await gsm_host(profile, callee=SimCallee(outcome=outcome, **QUICK))
    await cmd(link, wire, "ATE0")
    dial = "AT+QPCMV=0;+QPCMV=1,0;D07700900123;" if profile == "quectel" else "ATD07700900123;"
    await cmd(link, wire, dial, b"OK\r\n")
    got = await wire.until(expected)
    assert got.endswith(expected) and (profile != "huawei" or got == b"\r\n^ORIG:1,0\r\n\r\n^CONF:1\r\n" + expected)
    assert sim.model.call is None
    await link.wait_closed()


async def test_gsm_clir_and_callee_tone_on_the_pcm_port(gsm_host):
    sim, link, wire = await gsm_host("huawei", callee=SimCallee(tone_hz=600.0, alert_after_s=0.0, answer_after_s=0.0))
    pcm, arrived = bytearray(), asyncio.Event()
    audio = await SerialLink.open(sim.audio_port, lambda d: (pcm.extend(d), arrived.set()))
    try:
        await cmd(link, wire, "ATD+447700900123I;", b"OK\r\n")
        assert sim.model.call.clir
        await wire.until(b"^CONN:1,0\r\n")
        await cmd(link, wire, "AT^DDSETEX=2")  # the host opens the PCM path, as after ^CONN
        async with asyncio.timeout(5):
            while len(pcm) < 8000:
                arrived.clear()
                await arrived.wait()
        x = np.frombuffer(bytes(pcm[:8000]), "<i2").astype(float)
        assert abs(np.argmax(np.abs(np.fft.rfft(x))) * 8000 / x.size - 600.0) < 10
    finally:
        await audio.wait_closed()
        await link.wait_closed()


async def test_analog_vcon_after_the_answer_then_busy_tone(host):  # noqa: F811
    sim, link, wire = await host("conexant", callee=SimCallee(hangup_after_s=0.2, **QUICK))
    await cmd(link, wire, "AT+FCLASS=8")
    await cmd(link, wire, "AT+VSM=1,8000")
    got = await cmd(link, wire, "ATD5551234;", b"VCON\r\n")
    assert got == b"ATD5551234;\r\r\nVCON\r\n" and sim.dialled == ["5551234"]
    link.write(b"AT+VTR\r")
    await wire.until(b"CONNECT\r\n")
    decoder, events = DleDecoder(), []
    async with asyncio.timeout(5):
        while VoiceEvent.BUSY not in events:
            wire.changed.clear()
            await wire.changed.wait()
            events += [i.kind for i in decoder.feed(bytes(wire.data)) if isinstance(i, DleEvent)]
            wire.data.clear()
    link.write(b"\x10!")
    await wire.until(b"OK\r\n")
    await link.wait_closed()


async def test_analog_failure_and_abort(host):  # noqa: F811
    sim, link, wire = await host("conexant", callee=SimCallee(outcome=Outcome.BUSY, **QUICK))
    await cmd(link, wire, "ATE0")
    assert await cmd(link, wire, "ATD5551234;", b"BUSY\r\n") == b"\r\nBUSY\r\n"
    sim.callees["5550000"] = SimCallee(alert_after_s=0.0, answer_after_s=30.0)
    link.write(b"ATD5550000;\r")
    await sim.wait_for(lambda: sim.far_end is not None and sim.far_end.pending)
    link.write(b"AT\r")  # any byte aborts the dial
    assert await wire.until(b"OK\r\n") == b"\r\nNO CARRIER\r\n\r\nOK\r\n"
    assert not sim.off_hook
    await link.wait_closed()


async def test_analog_vcon_at_once_reports_ringback_then_audio(host):  # noqa: F811
    sim, link, wire = await host("conexant", vcon_at_once=True, callee=SimCallee(alert_after_s=0.05, answer_after_s=0.1))
    await cmd(link, wire, "ATE0")
    await cmd(link, wire, "AT+FCLASS=8")
    await cmd(link, wire, "AT+VSM=1,8000")
    assert await cmd(link, wire, "ATD5551234;", b"VCON\r\n") == b"\r\nVCON\r\n"  # at once
    await cmd(link, wire, "AT+VTR", b"CONNECT\r\n")
    decoder, kinds, audio = DleDecoder(), [], bytearray()
    async with asyncio.timeout(5):
        while len(audio) < 4000:
            wire.changed.clear()
            await wire.changed.wait()
            for item in decoder.feed(bytes(wire.data)):
                if isinstance(item, DleEvent):
                    kinds.append(item.kind)
                elif isinstance(item, Audio):
                    audio += item.data
            wire.data.clear()
    assert VoiceEvent.RINGBACK in kinds
    link.write(b"\x10!")
    await link.wait_closed()
