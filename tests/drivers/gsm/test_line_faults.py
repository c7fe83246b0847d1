"""GsmLine under supervision: case 31 (vanish mid-call, new port names, re-bound by IMEI),
garbage bytes, several modems at once, SMS persisted through on_sms."""
import asyncio
import contextlib

from appliance.lines import HangupCause, LineKind
from drivers.gsm.calls import CallState
from drivers.gsm.events import ModemLost, ModemReady, SmsReceived
from drivers.gsm.line import GsmConfig, GsmLine
from drivers.sim.gsm import SimIdentity
from tests.drivers.gsm.test_transcripts_voice import tone_pcm


class Handler:
    """Stands in for the appliance: answers every call and records what it saw."""

    def __init__(self) -> None:
        self.calls = []
        self.causes = []
        self.event = asyncio.Event()

    async def __call__(self, call) -> None:
        self.calls.append(call)
        self.event.set()
        await call.progress()
        await call.answer()
        self.causes.append(await call.wait_ended())
        self.event.set()

    async def wait(self, pred, timeout=5.0):
        async with asyncio.timeout(timeout):
            while not pred():
                self.event.clear()
                await self.event.wait()


@contextlib.asynccontextmanager
async def running(line: GsmLine, handler):
    task = asyncio.create_task(line.run(handler), name=f"test {line.line_id}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sim_discover(sim):
    return lambda: [(sim.port, sim.audio_port)] if sim.at is not None and sim.at.is_open else []


async def test_case31_vanish_mid_call_then_rebound_by_imei(sims):
    from tests.drivers.gsm.conftest import Events

    sim = sims("huawei")
    sim.pcm_source = tone_pcm(25)
    events, handler = Events(), Handler()
    line = GsmLine(GsmConfig(port="unused", profile="huawei"), on_event=events, discover=sim_discover(sim))
    loop = asyncio.get_running_loop()
    async with running(line, handler):
        [first] = await events.wait_for(ModemReady)
        assert first.line_id == "gsm:356938035643809" and first.port == sim.port
        old_port = sim.port
        sim.place_call("+447700900123")
        await handler.wait(lambda: handler.calls)
        call = handler.calls[0]
        assert call.kind is LineKind.GSM and call.line_id == "gsm:356938035643809"
        await sim.wait_received("AT^DDSETEX=2")
        async with asyncio.timeout(3):
            while call.audio.read_frame_nowait() is None:  # audio flowing on the PCM port
                call.audio.arrived.clear()
                await call.audio.arrived.wait()
        sim.vanish()
        await handler.wait(lambda: handler.causes)
        assert handler.causes == [HangupCause.LINE_LOST]  # ended locally, cleanly
        await events.wait_for(ModemLost)
        received_before = len(sim.received)
        replugged_at = loop.time()
        new_port, _ = sim.replug()
        assert new_port != old_port
        _, second = await events.wait_for(ModemReady, 2, timeout=6.0)
        assert loop.time() - replugged_at < 5.0
    assert second.line_id == first.line_id and second.port == new_port  # same line, new port name
    after = sim.received[received_before:]
    assert after[0] == "AT" and "ATE0" in after and "AT+CGSN" in after  # full init again, echo was on
    assert len(handler.calls) == 1  # the call did not survive


async def test_other_modem_on_the_port_is_refused(sims):
    from tests.drivers.gsm.conftest import Events

    sim = sims("generic", identity=SimIdentity(imei="490154203237518"))
    events = Events()
    line = GsmLine(GsmConfig(port="unused", imei="356938035643809"), on_event=events, discover=sim_discover(sim))
    async with running(line, Handler()):
        await sim.wait_received("AT+CGSN", count=2)  # tried, refused, retried under supervision
    assert events.of(ModemReady) == []


async def test_garbage_bytes_cause_no_crash(sims):
    from tests.drivers.gsm.conftest import Events

    sim = sims("generic")
    events, saved = Events(), []

    async def on_sms(ev):
        saved.append(ev)

    line = GsmLine(GsmConfig(port="unused"), on_sms=on_sms, on_event=events, discover=sim_discover(sim))
    async with running(line, Handler()):
        await events.wait_for(ModemReady)
        sim.inject_garbage(b"\x00\xff\xfe\x80garbage\r\n+CMTI: garbage\r\n^^^\r\n+CLIP: \"\r\n> ")
        sim.inject_garbage(bytes(range(256)) * 20)  # > MAX_BUFFER without a sane line end
        sim.inject_garbage(b"\r\nOK\r\nERROR\r\n+CME ERROR: 3\r\n")  # stray finals with nothing pending
        sim.deliver_text("+447700900123", "still alive")
        [ev] = await events.wait_for(SmsReceived)
        reply = await line.ussd("*100#")
    assert ev.text == "still alive" and saved == [ev]
    assert reply.text == "Balance 10.00 GBP"
    assert len(events.of(ModemReady)) == 1  # never restarted


async def test_several_modems_at_once(sims):
    from tests.drivers.gsm.conftest import Events

    a = sims("huawei", identity=SimIdentity(imei="356938035643809"))
    b = sims("quectel", identity=SimIdentity(imei="490154203237518"))
    ev_a, ev_b, handler = Events(), Events(), Handler()
    la = GsmLine(GsmConfig(port="unused", profile="huawei"), on_event=ev_a, discover=sim_discover(a))
    lb = GsmLine(GsmConfig(port="unused", profile="quectel"), on_event=ev_b, discover=sim_discover(b))
    async with running(la, handler), running(lb, handler):
        await ev_a.wait_for(ModemReady)
        await ev_b.wait_for(ModemReady)
        a.place_call("+447700900001")
        b.place_call("+447700900002")
        await handler.wait(lambda: len(handler.calls) == 2)
        for call in handler.calls:
            await call.wait_state(CallState.ACTIVE, 3.0)
        b.caller_hangs_up()
        a.caller_hangs_up()
        await handler.wait(lambda: len(handler.causes) == 2)
    assert {c.line_id for c in handler.calls} == {"gsm:356938035643809", "gsm:490154203237518"}
    assert {c.caller.number for c in handler.calls} == {"+447700900001", "+447700900002"}
    assert handler.causes == [HangupCause.CALLER_HUNG_UP] * 2


async def test_send_sms_through_the_line(sims):
    sim = sims("simcom")
    line = GsmLine(GsmConfig(port="unused", profile="simcom"), discover=sim_discover(sim))
    async with running(line, Handler()):
        sent = await line.send_sms("+447700900123", "Привет 😀 " * 10)  # UCS-2, two parts
    assert len(sent.references) == 2 and len(sim.model.sent_pdus) == 2


def test_config_from_toml_table():
    cfg = GsmConfig.from_dict({"port": "/dev/ttyUSB2", "audio_port": "/dev/ttyUSB1", "profile": "huawei", "pin": "1234"})
    assert cfg.discover() == [("/dev/ttyUSB2", "/dev/ttyUSB1")]
    assert GsmConfig.from_dict({"usb": "12d1:1001", "usb_interface": 2, "audio_interface": 1}).discover() == []
    import pytest

    with pytest.raises(ValueError):
        GsmConfig.from_dict({"port": "/dev/ttyUSB2", "profile": "nokia"})
    with pytest.raises(ValueError):
        GsmConfig.from_dict({"prot": "/dev/ttyUSB2"})
