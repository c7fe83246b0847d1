"""The only module that imports ``serial`` / ``serial_asyncio_fast``.

``SerialLink`` is a thin asyncio shell around one serial port: bytes in through a
callback, bytes out through ``write()``, and a future that completes when the port
goes away (USB unplug shows up as ``SerialException`` -> ``PortLost``). Ports are
opened by device path, or found by USB ``VID:PID`` (plus optional interface number).
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable

import serial
import serial.tools.list_ports
import serial_asyncio_fast

from drivers.at.errors import PortLost

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200  # USB modems ignore the rate; UART modules autobaud on the first AT
OPEN_TIMEOUT_S = 5.0  # opening a tty is local; longer means the device is wedged
WRITE_HIGH_WATER = 16 * 1024  # bytes queued before we report congestion (audio drops frames)


class SerialLink(asyncio.Protocol):
    def __init__(self, name: str, on_data: Callable[[bytes], None]) -> None:
        self.name = name
        self._on_data = on_data
        self._transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, port: str, on_data: Callable[[bytes], None], *, baudrate: int = DEFAULT_BAUD) -> "SerialLink":
        link = cls(port, on_data)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                transport, _ = await serial_asyncio_fast.create_serial_connection(
                    loop, lambda: link, port, baudrate=baudrate
                )
        except (serial.SerialException, OSError) as exc:
            raise PortLost(f"cannot open {port}: {exc}") from None
        except TimeoutError:
            raise PortLost(f"opening {port} took longer than {OPEN_TIMEOUT_S}s") from None
        link._transport = transport  # connection_made() runs a loop iteration later
        return link

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.lost.done():
            self.lost.set_result(exc)
        if exc is not None:
            log.warning("serial port %s lost: %s", self.name, exc)

    # API
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def congested(self) -> bool:
        return self.write_buffer_size > WRITE_HIGH_WATER

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise PortLost(f"{self.name} is closed")
        assert self._transport is not None
        self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        elif self._transport is None and not self.lost.done():
            self.lost.set_result(None)

    async def wait_closed(self, timeout: float = OPEN_TIMEOUT_S) -> None:
        """Close and wait until the transport has released the device."""
        self.close()
        if self.lost.done():
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.lost)
        except TimeoutError:
            log.warning("serial port %s did not close within %.1fs", self.name, timeout)


def _parse_vid_pid(usb: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\s*", usb)
    if m is None:
        raise ValueError(f"USB id must look like 12d1:1001, not {usb!r}")
    return int(m.group(1), 16), int(m.group(2), 16)


def find_usb_ports(usb: str, *, interface: int | None = None) -> list[str]:
    """Device paths of ports whose USB VID:PID is ``usb`` (sorted), optionally one interface.

    ``interface`` is the USB interface number as the kernel reports it in the port's
    location (``1-1.2:1.<n>``): Huawei E1550 has audio on 1 and AT on 2, for example.
    """
    vid, pid = _parse_vid_pid(usb)
    found = []
    for info in serial.tools.list_ports.comports():
        if info.vid != vid or info.pid != pid:
            continue
        if interface is not None and not (info.location or "").endswith(f".{interface}"):
            continue
        found.append(info.device)
    return sorted(found)


def find_usb_modems(usb: str, *, at_interface: int | None, audio_interface: int | None) -> list[tuple[str, str | None]]:
    """(AT port, audio port) per physical modem with this VID:PID, paired by USB location."""
    vid, pid = _parse_vid_pid(usb)
    by_device: dict[str, dict[int | None, str]] = {}
    for info in serial.tools.list_ports.comports():
        if info.vid != vid or info.pid != pid:
            continue
        loc = info.location or info.device
        device, _, intf = loc.partition(":")
        num = int(intf.rsplit(".", 1)[-1]) if intf and intf.rsplit(".", 1)[-1].isdigit() else None
        by_device.setdefault(device, {})[num] = info.device
    pairs = []
    for device, ports in sorted(by_device.items()):
        at = ports.get(at_interface) if at_interface is not None else sorted(ports.values())[-1]
        if at is None:
            continue
        pairs.append((at, ports.get(audio_interface) if audio_interface is not None else None))
    return pairs


def resolve_port(*, port: str | None, usb: str | None, interface: int | None = None) -> str:
    """The device path to open: ``port`` as given, else the first match of ``usb``."""
    if port:
        return port
    if not usb:
        raise ValueError("a modem needs either port= or usb=")
    ports = find_usb_ports(usb, interface=interface)
    if not ports:
        raise PortLost(f"no serial port with USB id {usb}" + (f" interface {interface}" if interface is not None else ""))
    return ports[0]
