"""Outgoing analog calls without a port: ``VoiceModem`` fed exact modem bytes by an
in-memory wire (no pty, no simulator), and the line state machine's far-end detection."""
import asyncio

import pytest

from appliance.lines import DialFailure
from drivers.voicemodem.dle import DleDecoder
from drivers.voicemodem.formats import choose_format, parse_vsm_options
from drivers.voicemodem.modem import DialResult, PortMode, VoiceModem
from drivers.voicemodem.outbound import DIAL_FAILURES
from drivers.voicemodem.profiles import AGERE, CONEXANT
from drivers.voicemodem.state import FarEndGone, LineMachine, LineState, Notice


class Wire:
    """Replies to the commands a dial needs with scripted bytes, a loop turn later (like a port)."""

    def __init__(self, replies: dict[bytes, list[bytes]]) -> None:
        self.replies = replies
        self.written: list[bytes] = []
        self.modem: VoiceModem | None = None

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        for chunk in self.replies.get(bytes(data), []):
            asyncio.get_running_loop().call_soon(self.modem.feed, chunk)


def modem_on(wire: Wire, profile=CONEXANT) -> tuple[VoiceModem, list]:
    events: list = []
    modem = VoiceModem(wire.write, events.append, profile=profile)
    wire.modem = modem
    modem.channel.echo_expected = False
    modem.format, modem.rate = choose_format(parse_vsm_options(['1,"UNSIGNED PCM",8,0,(8000),(0),(0)']),
                                             profile.encodings)
    return modem, events


@pytest.mark.parametrize("reply,result,failure", [
    (b"\r\nBUSY\r\n", DialResult.BUSY, DialFailure.BUSY),
    (b"\r\nNO ANSWER\r\n", DialResult.NO_ANSWER, DialFailure.NO_ANSWER),
    (b"\r\nNO CARRIER\r\n", DialResult.NO_CARRIER, DialFailure.UNREACHABLE),
    (b"\r\nNO DIALTONE\r\n", DialResult.NO_DIALTONE, DialFailure.LINE_DOWN),
    (b"\r\nNO DIAL TONE\r\n", DialResult.NO_DIALTONE, DialFailure.LINE_DOWN),
    (b"\r\nERROR\r\n", DialResult.ERROR, DialFailure.ERROR),
])
async def test_dial_finals(reply, result, failure):
    wire = Wire({b"ATD5551234;\r": [reply[:5], reply[5:]]})  # split across reads
    modem, _ = modem_on(wire)
    async with asyncio.timeout(2):
        assert await modem.dial("5551234") is result
    assert DIAL_FAILURES[result] is failure
    assert modem.machine.state is LineState.IDLE and modem.mode is PortMode.COMMAND
    assert wire.written == [b"ATD5551234;\r"]  # no voice stream was started


@pytest.mark.parametrize("profile,duplex", [(CONEXANT, b"AT+VTR\r"), (AGERE, b"AT+VTR\r")])
async def test_vcon_means_answered_then_audio_then_busy_tone_is_far_end_gone(profile, duplex):
    # CONNECT and the first audio (with a shielded 0x10 sample) arrive in one read
    wire = Wire({b"ATD5551234;\r": [b"\r\nVCON\r\n"], duplex: [b"\r\nCONNECT\r\n\x80\x90\x10\x10\x70" + b"\x80" * 315]})
    modem, events = modem_on(wire, profile)
    async with asyncio.timeout(2):
        assert await modem.dial("5551234") is DialResult.CONNECTED
    assert modem.machine.state is LineState.VOICE and modem.mode is PortMode.VOICE
    assert wire.written == [b"ATD5551234;\r", duplex]
    frame = modem.audio.read_frame_nowait()
    assert frame is not None and len(frame) == 320
    modem.feed(b"\x80\x10r\x80")  # ringback from an "at once" chipset: noted, not an ending
    assert not [e for e in events if isinstance(e, FarEndGone)]
    modem.feed(b"\x80\x10")
    modem.feed(b"b\x80")  # busy tone, DLE split across reads
    assert [e for e in events if isinstance(e, FarEndGone)] == [FarEndGone("busy tone")]
    modem.connection_lost(None)


async def test_ok_instead_of_vcon_is_answered_too():
    wire = Wire({b"ATD5551234;\r": [b"\r\nOK\r\n"], b"AT+VTR\r": [b"\r\nCONNECT\r\n"]})
    modem, _ = modem_on(wire)
    async with asyncio.timeout(2):
        assert await modem.dial("5551234") is DialResult.CONNECTED
    modem.connection_lost(None)


@pytest.mark.parametrize("data,reason", [(b"\x80\x10d", "dial tone"), (b"\x10l", "loop current break"),
                                         (b"\x80\x80\x10b\x80\x10b", "busy tone")])
def test_far_end_gone_pure(data, reason):
    machine = LineMachine(name="t")
    machine.transition(LineState.DIALING, "dial")
    machine.transition(LineState.VOICE, "VCON")
    events = []
    for item in DleDecoder().feed(data):
        if hasattr(item, "kind"):
            events += machine.on_voice_event(item, 0.0)
    assert [e for e in events if not isinstance(e, Notice)] == [FarEndGone(reason)]  # once, not per tone burst


def test_withhold_prefix_config():
    from drivers.voicemodem.config import AnalogConfig

    assert AnalogConfig.from_dict({"port": "/dev/ttyACM0", "withhold_prefix": "141"}).withhold_prefix == "141"
    assert AnalogConfig.from_dict({"port": "/dev/ttyACM0", "withhold_prefix": "*67"}).withhold_prefix == "*67"
    assert AnalogConfig.from_dict({"port": "/dev/ttyACM0"}).withhold_prefix is None
    with pytest.raises(ValueError, match="withhold_prefix"):
        AnalogConfig.from_dict({"port": "/dev/ttyACM0", "withhold_prefix": "14a"})
