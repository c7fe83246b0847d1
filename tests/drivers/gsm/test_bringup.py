"""Full bring-up through the real driver against the simulator, per profile."""
import pytest

from drivers.gsm.events import ModemReady


@pytest.mark.parametrize("profile", ["generic", "huawei", "simcom", "quectel"])
async def test_bringup_each_profile(sims, attach, profile):
    sim = sims(profile, pin="1234")
    async with attach(sim, echo=True, pin="1234") as (m, events):
        sim.model.echo = True  # power-on state: echo on
        ident = await m.initialise()
    assert ident.imei == "356938035643809" and ident.iccid == "89441000301234567890"
    [ready] = events.of(ModemReady)
    assert ready.line_id == "gsm:356938035643809" and ready.operator == "Vodafone UK" and ready.rssi == 17
    assert "ATE0" in sim.received and 'AT+CPIN="1234"' in sim.received
    iccid_cmd = {"generic": "AT+CCID", "huawei": "AT^ICCID?", "simcom": "AT+CCID", "quectel": "AT+QCCID"}[profile]
    assert iccid_cmd in sim.received
    if profile == "huawei":
        assert "AT^CURC=0" in sim.received and m.voice_ok
