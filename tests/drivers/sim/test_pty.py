import asyncio

import pytest

from drivers.at.errors import PortLost
from drivers.serial_port import SerialLink, find_usb_ports, resolve_port
from drivers.sim.pty import PtyEndpoint


class Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.changed = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    async def wait_for(self, n: int) -> bytes:
        async with asyncio.timeout(2):
            while len(self.data) < n:
                self.changed.clear()
                await self.changed.wait()
        return bytes(self.data)


async def test_bytes_flow_both_ways_over_a_real_pty():
    sim_rx, host_rx = Collector(), Collector()
    ep = PtyEndpoint(sim_rx)
    link = await SerialLink.open(ep.port, host_rx)
    try:
        link.write(b"AT\r")
        assert await sim_rx.wait_for(3) == b"AT\r"
        ep.write(b"AT\r\r\nOK\r\n")
        assert await host_rx.wait_for(9) == b"AT\r\r\nOK\r\n"
    finally:
        await link.wait_closed()
        ep.close()


async def test_unplug_is_reported_as_lost_and_writes_fail():
    ep = PtyEndpoint(Collector())
    link = await SerialLink.open(ep.port, Collector())
    ep.close()
    async with asyncio.timeout(2):
        exc = await link.lost
    assert exc is not None  # SerialException: device disconnected
    with pytest.raises(PortLost):
        link.write(b"AT\r")


async def test_reopen_gives_a_new_port_name():
    ep = PtyEndpoint(Collector())
    first = ep.port
    link = await SerialLink.open(first, Collector())
    second = ep.reopen()
    try:
        assert second != first
        async with asyncio.timeout(2):
            await link.lost
        rx = Collector()
        link2 = await SerialLink.open(second, rx)
        ep.write(b"hello")
        assert await rx.wait_for(5) == b"hello"
        await link2.wait_closed()
    finally:
        ep.close()


async def test_open_missing_port_and_usb_lookup():
    with pytest.raises(PortLost):
        await SerialLink.open("/dev/does-not-exist-42", Collector())
    assert find_usb_ports("ffff:fffe") == []
    assert resolve_port(port="/dev/ttyUSB2", usb=None) == "/dev/ttyUSB2"
    with pytest.raises(PortLost):
        resolve_port(port=None, usb="ffff:fffe")
    with pytest.raises(ValueError):
        resolve_port(port=None, usb="huawei")


def test_usb_modems_paired_by_location(monkeypatch):
    from types import SimpleNamespace

    import drivers.serial_port as sp

    def port(dev, loc, vid=0x12D1, pid=0x1001):
        return SimpleNamespace(device=dev, location=loc, vid=vid, pid=pid)

    fake = [port("/dev/ttyUSB0", "1-1.2:1.0"), port("/dev/ttyUSB1", "1-1.2:1.1"), port("/dev/ttyUSB2", "1-1.2:1.2"),
            port("/dev/ttyUSB5", "1-1.3:1.1"), port("/dev/ttyUSB6", "1-1.3:1.2"),
            port("/dev/ttyACM0", "1-1.4:1.0", vid=0x1E0E, pid=0x9001)]
    monkeypatch.setattr(sp.serial.tools.list_ports, "comports", lambda: fake)
    assert sp.find_usb_modems("12d1:1001", at_interface=2, audio_interface=1) == [
        ("/dev/ttyUSB2", "/dev/ttyUSB1"), ("/dev/ttyUSB6", "/dev/ttyUSB5")]
    assert sp.find_usb_ports("12d1:1001", interface=2) == ["/dev/ttyUSB2", "/dev/ttyUSB6"]
    assert sp.resolve_port(port=None, usb="1e0e:9001") == "/dev/ttyACM0"
