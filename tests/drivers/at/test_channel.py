import asyncio

import pytest

from drivers.at.channel import AtChannel, Urc, response_prefix
from drivers.at.errors import AtError, AtTimeout, CmeError, CmsError, PortLost

URCS = ("+CMTI:", "^RSSI", "^BOOT", "+CREG:", "RING", "+CDSI:")


class Wire:
    """In-memory modem side: records writes; replies are fed explicitly by the test."""

    def __init__(self, delivery: str) -> None:
        self.written: list[bytes] = []
        self.wrote = asyncio.Event()
        self.urcs: list[Urc] = []
        self.delivery = delivery
        self.ch = AtChannel(self.write, self.urcs.append, urc_prefixes=URCS, error_finals=("COMMAND NOT SUPPORT",))

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.wrote.set()

    def reply(self, data: bytes) -> None:
        if self.delivery == "whole":
            self.ch.feed(data)
        else:
            for b in data:
                self.ch.feed(bytes([b]))

    async def next_write(self) -> bytes:
        async with asyncio.timeout(1):
            while not self.written:
                self.wrote.clear()
                await self.wrote.wait()
        return self.written.pop(0)


@pytest.fixture(params=["whole", "bytewise"])
def wire(request):
    return Wire(request.param)


async def run(wire: Wire, coro, reply: bytes):
    task = asyncio.create_task(coro, name="test-command")
    await wire.next_write()
    wire.reply(reply)
    async with asyncio.timeout(1):
        return await task


async def test_urc_inside_response_is_routed_aside(wire):
    r = await run(wire, wire.ch.command("AT+CSQ"), b"\r\n+CSQ: 14,99\r\n\r\n^RSSI:14\r\n\r\nOK\r\n")
    assert r.lines == ("+CSQ: 14,99",) and r.final == "OK"
    assert wire.urcs == [Urc("^RSSI:14")]


async def test_echo_dropped_and_info_line_kept(wire):
    r = await run(wire, wire.ch.command("AT+CGMI"), b"AT+CGMI\r\r\nhuawei\r\n\r\nOK\r\n")
    assert r.lines == ("huawei",)


async def test_own_prefix_beats_urc_prefix(wire):
    r = await run(wire, wire.ch.command("AT+CREG?"), b'\r\n+CREG: 2,1,"1F54","15A"\r\n\r\nOK\r\n')
    assert r.first("+CREG:") == '2,1,"1F54","15A"' and wire.urcs == []


@pytest.mark.parametrize(
    "reply,exc,code",
    [
        (b"\r\n+CME ERROR: 14\r\n", CmeError, 14),
        (b"\r\n+CME ERROR:58\r\n", CmeError, 58),
        (b"\r\nCME Error: unknown\r\n", CmeError, 100),
        (b"\r\n+CME ERROR: SIM busy\r\n", CmeError, 14),
        (b"\r\n+CMS ERROR: 500\r\n", CmsError, 500),
        (b"\r\nCOMMAND NOT SUPPORT\r\n", AtError, None),
    ],
)
async def test_error_finals(wire, reply, exc, code):
    with pytest.raises(exc) as info:
        await run(wire, wire.ch.command("AT+CSCA?"), reply)
    if code is not None:
        assert info.value.code == code


async def test_prompt_pdu_and_urc_after_prompt(wire):
    task = asyncio.create_task(wire.ch.command("AT+CMGS=32", pdu="0031AB"), name="send")
    assert await wire.next_write() == b"AT+CMGS=32\r"
    wire.reply(b'\r\n> \r\n+CMTI: "SM",4\r\n')
    assert await wire.next_write() == b"0031AB\x1a"
    wire.reply(b'0031AB\r\n\r\n+CDSI: "SR",9\r\n\r\n+CMGS: 17\r\n\r\nOK\r\n')
    async with asyncio.timeout(1):
        r = await task
    assert r.first("+CMGS:") == "17"
    assert wire.urcs == [Urc('+CMTI: "SM",4'), Urc('+CDSI: "SR",9')]


async def test_cmt_body_joined_and_no_carrier_is_urc_when_not_dialling(wire):
    wire.reply(b"\r\n+CDS: 25\r\n0791AB\r\n\r\nNO CARRIER\r\n")
    assert wire.urcs == [Urc("+CDS: 25", "0791AB"), Urc("NO CARRIER")]


async def test_no_carrier_ends_a_dial(wire):
    with pytest.raises(AtError) as info:
        await run(wire, wire.ch.command("ATD123;", call_result=True), b"\r\nBUSY\r\n")
    assert info.value.final == "BUSY"


@pytest.mark.parametrize("reply", [b"\r\nNO DIALTONE\r\n", b"\r\nNO DIAL TONE\r\n", b"\r\nNo Dial Tone\r\n"])
async def test_no_dialtone_in_either_spelling_ends_a_dial_at_once(wire, reply):
    # V.250 result code 6; some chipsets print it with a space. Either one is the ATD's
    # final result (the command does not wait for a timeout) and is reported in the V.250 spelling.
    with pytest.raises(AtError) as info:
        await run(wire, wire.ch.command("ATD123;", call_result=True), reply)
    assert info.value.final == "NO DIALTONE"
    assert not wire.ch.needs_resync and wire.urcs == []
    r = await run(wire, wire.ch.command("AT"), b"\r\nOK\r\n")  # the channel is free for the next command
    assert r.final == "OK"


async def test_no_dial_tone_is_a_urc_when_not_dialling(wire):
    r = await run(wire, wire.ch.command("AT+CSQ"), b"\r\nNO DIAL TONE\r\n\r\n+CSQ: 14,99\r\n\r\nOK\r\n")
    assert r.lines == ("+CSQ: 14,99",)
    wire.reply(b"\r\nNO DIAL TONE\r\n")  # and with nothing pending at all
    assert wire.urcs == [Urc("NO DIALTONE"), Urc("NO DIALTONE")]


async def test_timeout_starts_at_write_then_resync():
    wire = Wire("whole")
    with pytest.raises(AtTimeout):
        await wire.ch.command("AT+CSQ", timeout=0.05)
    assert wire.ch.needs_resync
    task = asyncio.create_task(wire.ch.command("AT+CGMI"), name="after-timeout")
    assert await wire.next_write() == b"AT+CSQ\r"
    assert await wire.next_write() == b"AT\r"  # resync first
    wire.reply(b"\r\n+CSQ: 1,99\r\n\r\nOK\r\n")  # the late answer completes the resync
    assert await wire.next_write() == b"AT+CGMI\r"
    wire.reply(b"\r\nhuawei\r\n\r\nOK\r\n")
    async with asyncio.timeout(1):
        assert (await task).lines == ("huawei",)


async def test_a_cancelled_command_resyncs_before_the_next_one():
    wire = Wire("whole")
    dial = asyncio.create_task(wire.ch.command("ATD+441632960000;", call_result=True), name="dial")
    assert await wire.next_write() == b"ATD+441632960000;\r"
    dial.cancel()  # the agent hung up while the modem was still dialling
    with pytest.raises(asyncio.CancelledError):
        await dial
    assert wire.ch.needs_resync
    task = asyncio.create_task(wire.ch.command("AT+CHUP"), name="after-cancel")
    assert await wire.next_write() == b"AT\r"  # back in command mode first
    wire.reply(b"\r\nNO CARRIER\r\n\r\nOK\r\n")  # the aborted dial's late result, then the AT's OK
    assert await wire.next_write() == b"AT+CHUP\r"
    wire.reply(b"\r\nOK\r\n")
    async with asyncio.timeout(1):
        assert (await task).lines == ()


async def test_port_lost_fails_pending_and_later_commands():
    wire = Wire("whole")
    task = asyncio.create_task(wire.ch.command("AT"), name="lost")
    await wire.next_write()
    wire.ch.connection_lost(OSError(5, "EIO"))
    with pytest.raises(PortLost):
        async with asyncio.timeout(1):
            await task
    with pytest.raises(PortLost):
        await wire.ch.command("AT")


async def test_urgent_command_jumps_the_queue():
    wire = Wire("whole")
    first = asyncio.create_task(wire.ch.command("AT+CSQ"), name="first")
    await wire.next_write()
    normal = asyncio.create_task(wire.ch.command("AT+COPS?"), name="normal")
    urgent = asyncio.create_task(wire.ch.command("AT+CHUP", urgent=True), name="urgent")
    await asyncio.sleep(0)  # let both queue up behind the gate (ordering only, not timing)
    wire.reply(b"\r\nOK\r\n")
    assert await wire.next_write() == b"AT+CHUP\r"
    wire.reply(b"\r\nOK\r\n")
    assert await wire.next_write() == b"AT+COPS?\r"
    wire.reply(b"\r\nOK\r\n")
    async with asyncio.timeout(1):
        await asyncio.gather(first, normal, urgent)


def test_response_prefix():
    assert response_prefix("AT+CSQ") == "+CSQ:"
    assert response_prefix("AT^CVOICE?") == "^CVOICE:"
    assert response_prefix('AT+CPMS="SR"') == "+CPMS:"
    assert response_prefix("ATD123;") is None
