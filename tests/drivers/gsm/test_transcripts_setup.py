"""transcripts.md cases 1, 2, 4, 6, 13: bring-up quirks replayed byte for byte over a pty."""
import pytest

from drivers.at.errors import AtError, FatalDriverError
from drivers.gsm import setup
from drivers.gsm.events import SignalChanged


async def test_case1_echo_after_power_up_and_atz(sims, attach):
    sim = sims("huawei")
    sim.script("AT", [b"AT\r\r\nOK\r\n"])
    sim.script("ATE0", [b"ATE0\r\r\nOK\r\n"])
    sim.script("AT+CMEE=1", [b"\r\nOK\r\n"])
    sim.script("ATZ", [b"\r\nOK\r\n"])
    sim.script("AT+CGMI", [b"AT+CGMI\r\r\nhuawei\r\n\r\nOK\r\n"])
    async with attach(sim) as (m, _):
        await setup.wake(m.ch)
        await setup.reset_echo(m.ch)
        await m.ch.command("ATZ")
        r = await m.ch.command("AT+CGMI")
        assert r.lines == ("huawei",)  # the echoed "AT+CGMI" was discarded, never data
        # the driver's own reset always re-sends ATE0 right after ATZ
        sim.received.clear()
        await setup.reset_echo(m.ch, factory_reset=True)
        assert sim.received == ["ATZ", "ATE0", "AT+CMEE=1"]


async def test_case2_sim_busy_after_pin_is_retried(sims, attach, monkeypatch):
    sim = sims("generic")
    sim.script("AT+CPIN?", [b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"])
    sim.script('AT+CPIN="1111"', [b"\r\nOK\r\n"])
    sim.script("AT+CSCA?", [b"\r\n+CME ERROR: 14\r\n"])
    sim.script("AT+CSCA?", [b"\r\n+CME ERROR: 14\r\n"])
    sim.script("AT+CSCA?", [b"\r\n+CME ERROR: 14\r\n", b"\r\n+CPIN: READY\r\n"])
    sim.script("AT+CSCA?", [b'\r\n+CSCA: "+353868002000",145\r\n\r\nOK\r\n'])
    waits: list[float] = []

    async def recording_sleep(s):
        waits.append(s)

    monkeypatch.setattr(setup, "_sleep", recording_sleep)
    async with attach(sim) as (m, _):
        await setup.unlock_sim(m.ch, "1111")
        r = await setup.retry_sim_busy(m.ch, "AT+CSCA?")
    assert r.first("+CSCA:") == '"+353868002000",145'
    assert sim.received.count("AT+CSCA?") == 4
    assert waits == sorted(waits) and waits[1] == 2 * waits[0]  # growing back-off
    # the budget covers the >= 10 s SIM-busy windows seen in the field
    total, step = 0.0, 0.2
    while total < setup.SIM_BUSY_BUDGET_S:
        total, step = total + step, min(step * 2, setup.SIM_BUSY_MAX_STEP_S)
    assert total >= 10


async def test_case2_variant_cmee2_text_sim_busy(sims, attach):
    sim = sims("generic")
    sim.script("AT+CSCA?", [b"\r\n+CME ERROR: SIM busy\r\n"])
    sim.script("AT+CSCA?", [b'\r\n+CSCA: "+353868002000",145\r\n\r\nOK\r\n'])
    async with attach(sim) as (m, _):
        r = await setup.retry_sim_busy(m.ch, "AT+CSCA?")
    assert r.first("+CSCA:") and sim.received.count("AT+CSCA?") == 2


async def test_case4_command_not_support_and_clac(sims, attach):
    sim = sims("huawei")
    sim.script("AT+WIND?", [b"\r\nCOMMAND NOT SUPPORT\r\n"])
    sim.script("AT+CLAC", [b"&C\r\r\n&D\r\r\n&F\r\r\n+CUSD\r\r\n^DTMF\r\r\n^USSDMODE\r\r\n^CVOICE\r\r\nOK\r\n"])
    async with attach(sim) as (m, _):
        with pytest.raises(AtError) as info:
            await m.ch.command("AT+WIND?")
        assert info.value.final == "COMMAND NOT SUPPORT"
        assert await setup.supported_commands(m.ch) == {"&C", "&D", "&F", "+CUSD", "^DTMF", "^USSDMODE", "^CVOICE"}


async def test_case6_wrong_pin_stops_at_once(sims, attach):
    sim = sims("generic")
    sim.script("AT+CMGF=0", [b"\r\n+CME ERROR: 11\r\n"])
    sim.script("AT+CPIN?", [b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"])
    sim.script('AT+CPIN="0000"', [b"\r\n+CME ERROR: 16\r\n"])
    sim.script("AT+CPIN?", [b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"])
    async with attach(sim) as (m, _):
        with pytest.raises(FatalDriverError, match="SIM PIN wrong"):
            await setup.run_or_unlock(m.ch, "AT+CMGF=0", "0000")
    assert sim.received == ["AT+CMGF=0", "AT+CPIN?", 'AT+CPIN="0000"', "AT+CPIN?"]  # PIN tried once, nothing after


async def test_case13_huawei_noise_between_info_and_ok(sims, attach):
    sim = sims("huawei")
    sim.script("AT+CSQ", [b"\r\n+CSQ: 14,99\r\n", b"\r\n^RSSI:14\r\n", b"\r\nOK\r\n"])
    sim.script("AT^CURC=0", [b"\r\nOK\r\n"])
    async with attach(sim) as (m, events):
        assert await setup.signal(m.ch) == 14
        [sig] = await events.wait_for(SignalChanged)
        assert (sig.rssi, sig.dbm) == (14, -85)
        sim.send(b"\r\n^BOOT:35323129,0,0,0,26\r\n")
        sim.send(b"\r\n^MODE:5,4\r\n")
        r = await m.ch.command("AT^CURC=0")  # ^BOOT/^MODE neither completed nor failed it
        assert r.final == "OK" and r.lines == ()
        assert len(events.of(SignalChanged)) == 1
