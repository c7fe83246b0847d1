"""[[analog]] tables -> AnalogConfig, and the line built from one."""
import pytest

from drivers.voicemodem import profiles
from drivers.voicemodem.config import AnalogConfig


def test_defaults_and_mapping():
    cfg = AnalogConfig.from_dict({"port": "/dev/ttyACM0"})
    assert cfg.line_id == "analog:0" and cfg.chipset() is None and cfg.resolve() == "/dev/ttyACM0"
    s = cfg.settings()
    assert not s.caller_id_raw and s.long_silence_s == 30.0
    cfg = AnalogConfig.from_dict({"usb": "0572:1329", "profile": "USR5637", "caller_id": "raw", "line": 2,
                                  "silence_hangup_s": 12})
    assert cfg.chipset() is profiles.USR_5637 and cfg.settings().caller_id_raw and cfg.line_id == "analog:2"
    assert cfg.settings().long_silence_s == 12.0


@pytest.mark.parametrize(("table", "complaint"), [
    ({}, "port= or usb="),
    ({"port": "/dev/x", "bogus": 1}, "unknown [[analog]] keys: bogus"),
    ({"port": "/dev/x", "profile": "hayes"}, "profile must be"),
    ({"port": "/dev/x", "caller_id": "fsk"}, "caller_id must be"),
    ({"port": "/dev/x", "line": "zero"}, "[[analog]]"),
    ({"port": "/dev/x", "silence_hangup_s": 0}, "positive"),
])
def test_bad_tables_are_refused_with_a_reason(table, complaint):
    with pytest.raises(ValueError) as err:
        AnalogConfig.from_dict(table)
    assert complaint in str(err.value)


async def test_line_from_config_comes_up_on_the_configured_port(sim_factory):
    import asyncio
    import contextlib

    from drivers.voicemodem.line import AnalogLine

    from .conftest import WAIT_S, Calls

    sim = await sim_factory("agere")
    cfg = AnalogConfig.from_dict({"port": sim.port, "profile": "agere", "caller_id": "raw", "line": 1})
    line = AnalogLine.from_config(cfg, Calls())
    task = asyncio.create_task(line.run(), name="test-line")
    try:
        async with asyncio.timeout(WAIT_S):
            await line.wait_up()
        assert line.line_id == "analog:1" and line.modem.profile is profiles.AGERE
        assert "ATI0" not in sim.commands() and sim.cid_mode == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
