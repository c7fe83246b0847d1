"""A simulated caller pressing keys (``run.py sim keys``): the exact bytes each simulated modem
sends per digit, and our GSM and analog drivers turning them back into the same digits."""
from __future__ import annotations

import asyncio

import pytest

from appliance import simulation
from appliance.simulation import SimulationControl, SimulationError
from drivers.serial_port import SerialLink
from drivers.sim.analog import AnalogModemSim, SimCaller
from drivers.sim.gsm import GsmSimulator
from media.dtmf import dtmf_pcm
from tests.drivers.gsm.conftest import attached
from tests.drivers.sim import test_analog as wire_mod
from tests.drivers.sim.test_analog import Wire, cmd
from tests.drivers.voicemodem.conftest import Calls, running_line

KEYS = "0123456789*#ABCD" + "55"  # every key, then the same key twice (two presses, not one)
WAIT_S = 8.0  # Huawei: 18 keys x 200 ms of in-band tone at the modem's real pace
GSM_URC = {  # modems.md A.8; Huawei has no DTMF URC (in-band tone, below)
    "generic": lambda d: f"\r\n+DTMF: {d}\r\n".encode(),
    "simcom": lambda d: f"\r\n+RXDTMF: {d}\r\n".encode(),
    "quectel": lambda d: f"\r\n+QTONEDET: {ord(d)}\r\n".encode(),  # the ASCII code: "5" -> 53, "#" -> 35
}


@pytest.fixture
async def gsm_sims():
    made: list[GsmSimulator] = []

    def make(profile: str) -> GsmSimulator:
        sim = GsmSimulator(profile).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


async def answered_on_the_wire(sim: GsmSimulator) -> tuple[SerialLink, Wire]:
    wire = Wire()
    link = await SerialLink.open(sim.port, wire)
    sim.place_call("+447700900123")
    await cmd(link, wire, sim.profile.answer)
    return link, wire


async def keys_heard(sim, call) -> str:
    """The simulated caller presses every key of ``KEYS``; what the driver's ``on_dtmf`` reports."""
    digits, heard = [], asyncio.Event()
    call.on_dtmf(lambda d: (digits.append(d), heard.set()))
    for digit in KEYS:
        sim.send_dtmf(digit)
    async with asyncio.timeout(WAIT_S):
        while len(digits) < len(KEYS):
            heard.clear()
            await heard.wait()
    return "".join(digits)


def test_urc_bytes_per_profile_are_the_documented_ones():
    assert GSM_URC["quectel"]("#") == b"\r\n+QTONEDET: 35\r\n" and GSM_URC["quectel"]("A") == b"\r\n+QTONEDET: 65\r\n"


@pytest.mark.parametrize("profile", sorted(GSM_URC))
async def test_gsm_sim_sends_each_key_as_its_profiles_urc(gsm_sims, profile):
    sim = gsm_sims(profile)
    link, wire = await answered_on_the_wire(sim)
    try:
        del wire.data[:]
        for digit in KEYS:
            sim.send_dtmf(digit)
            expected = GSM_URC[profile](digit)
            assert await wire.until(expected) == expected  # nothing before it, nothing else
    finally:
        await link.wait_closed()


async def test_huawei_sim_puts_each_key_in_the_call_audio(gsm_sims, monkeypatch):
    monkeypatch.setattr(wire_mod, "WAIT_S", WAIT_S)  # 3.6 s of tones stream at the modem's real pace
    sim = gsm_sims("huawei")
    link, wire = await answered_on_the_wire(sim)
    audio = Wire()
    audio_link = await SerialLink.open(sim.audio_port, audio)
    try:
        await cmd(link, wire, "AT^DDSETEX=2")  # the host opens the PCM path; silence streams
        for digit in KEYS:
            sim.send_dtmf(digit)
        pcm = await audio.until(dtmf_pcm(KEYS[-1]) + bytes(320))  # up to the last tone, then silence again
        start = pcm.index(dtmf_pcm(KEYS[0]))
        assert pcm[start:start + len(dtmf_pcm(KEYS))] == dtmf_pcm(KEYS)  # 100 ms tone + 100 ms gap per key
        assert b"DTMF" not in bytes(wire.data)  # no URC on the AT port: Huawei has none
    finally:
        await audio_link.wait_closed()
        await link.wait_closed()


async def test_gsm_sim_refuses_keys_without_an_answered_call_and_bad_digits(gsm_sims):
    sim = gsm_sims("quectel")
    with pytest.raises(ValueError, match="no answered call"):
        sim.send_dtmf("2")
    sim.place_call("+447700900123")
    with pytest.raises(ValueError, match="no answered call"):
        sim.send_dtmf("2")  # still ringing
    with pytest.raises(ValueError, match="not a DTMF digit"):
        sim.send_dtmf("x")


@pytest.mark.parametrize("profile", ["huawei", "generic", "simcom", "quectel"])
async def test_gsm_driver_decodes_the_simulated_keys(gsm_sims, profile):
    sim = gsm_sims(profile)
    calls, offered = [], asyncio.Event()
    async with attached(sim, on_incoming=lambda c: (calls.append(c), offered.set())):
        sim.place_call("+447700900123")
        async with asyncio.timeout(WAIT_S):
            await offered.wait()
        await calls[0].answer()
        assert await keys_heard(sim, calls[0]) == KEYS


async def test_analog_sim_sends_each_key_as_a_shielded_dle_group():
    async with AnalogModemSim("conexant") as sim:
        wire = Wire()
        link = await SerialLink.open(sim.port, wire)
        try:
            await cmd(link, wire, "AT+FCLASS=8")
            await cmd(link, wire, "AT+VLS=1")
            for digit in KEYS:
                sim.send_dtmf(digit)
                d = digit.encode()
                expected = b"\x10/" + b"\x10" + d + b"\x10" + d + b"\x10~"  # V.253/IS-101: start, digit x2, end
                assert await wire.until(expected) == expected
        finally:
            await link.wait_closed()


async def test_analog_driver_decodes_the_simulated_keys():
    async with AnalogModemSim("conexant", time_scale=0.1) as sim:
        calls = Calls()
        async with running_line(sim, calls):
            ringing = asyncio.create_task(sim.ring(SimCaller(), style="us", rings=4), name="test-ring")
            try:
                call = await calls.next()
                await call.answer()
            finally:
                ringing.cancel()
                await asyncio.wait({ringing})
            assert await keys_heard(sim, call) == KEYS


async def test_simulation_control_presses_keys_in_order_only_during_a_call(gsm_sims, monkeypatch):
    monkeypatch.setattr(simulation, "KEY_GAP_S", 0.0)
    sim = gsm_sims("simcom")
    control = SimulationControl({"gsm": sim})
    try:
        with pytest.raises(SimulationError, match="no simulated call on the gsm line"):
            control.keys("gsm", "2")
        with pytest.raises(SimulationError, match="DTMF digits"):
            control.keys("gsm", "2x")
        with pytest.raises(SimulationError, match="no simulated analog line"):
            control.keys("analog", "2")
        link, wire = await answered_on_the_wire(sim)
        try:
            assert "presses 12#" in control.keys("gsm", "12#")
            for digit in "12#":
                await wire.until(GSM_URC["simcom"](digit))
        finally:
            await link.wait_closed()
    finally:
        await control.close()
