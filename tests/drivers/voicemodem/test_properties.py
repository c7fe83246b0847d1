"""Property tests: DLE framing is split-invariant, and random voice-mode bytes never crash the driver."""
import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.voicemodem.dle import Audio, DleDecoder, DleEvent, VoiceEvent, shield
from drivers.voicemodem.modem import PortMode, VoiceModem
from drivers.voicemodem.profiles import AGERE, CONEXANT
from drivers.voicemodem.state import CallAbandoned, CallOffered, DtmfReceived, FarEndGone, Notice

EVENT_CODES = b"bdsqR0123456789*#ABCDuPHhlTQS"


def decode_all(chunks, **kw):
    dec = DleDecoder(**kw)
    audio, events = bytearray(), []
    for chunk in chunks:
        for item in dec.feed(chunk):
            if isinstance(item, Audio):
                audio += item.data
            else:
                events.append((item.kind, item.code))
    return bytes(audio), events


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@given(
    pieces=st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(list(EVENT_CODES))), max_size=30),
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_shielded_stream_decodes_the_same_however_it_is_split(pieces, points):
    stream = bytearray()
    want_audio = bytearray()
    for piece in pieces:
        if isinstance(piece, int):
            stream += bytes([0x10, piece])
        else:
            stream += shield(piece)
            want_audio += piece
    whole = decode_all([bytes(stream)])
    assert whole[0] == bytes(want_audio)
    assert decode_all(cut(bytes(stream), points)) == whole
    assert decode_all([bytes([b]) for b in stream]) == whole


@given(data=st.binary(max_size=2000), points=st.lists(st.integers(min_value=0, max_value=4000), max_size=10))
def test_random_bytes_decode_without_error_and_split_invariant(data, points):
    audio, events = decode_all([data])
    assert len(audio) <= 2 * len(data)
    assert all(isinstance(kind, VoiceEvent) for kind, _ in events)
    assert decode_all(cut(data, points)) == (audio, events)


class FakeWire:
    """In-memory modem: answers the commands an answer() needs, then carries random bytes."""

    REPLIES = {b"AT+VLS=1\r": b"\r\nOK\r\n", b"AT+VTR\r": b"\r\nCONNECT\r\n", b"AT+VRX\r": b"\r\nCONNECT\r\n"}

    def __init__(self) -> None:
        self.modem: VoiceModem | None = None
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data
        reply = self.REPLIES.get(bytes(data))
        if reply is not None:
            asyncio.get_running_loop().call_soon(self.modem.feed, reply)


async def answered_modem(profile):
    wire, events = FakeWire(), []
    modem = VoiceModem(wire.write, events.append, profile=profile)
    wire.modem = modem
    from drivers.voicemodem.formats import choose_format, parse_vsm_options

    modem.format, modem.rate = choose_format(parse_vsm_options(['1,"UNSIGNED PCM",8,0,(8000),(0),(0)',
                                                                '130,"ULAW",8,0,(8000),(0),(0)']),
                                             profile.encodings)
    modem.feed(b"\r\nRING\r\n")
    async with asyncio.timeout(2):
        await modem.answer()
    return modem, events


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=20), agere=st.booleans())
def test_random_bytes_in_voice_mode_never_crash_the_driver(chunks, agere):
    async def run() -> None:
        modem, events = await answered_modem(AGERE if agere else CONEXANT)
        assert modem.mode is PortMode.VOICE
        for chunk in chunks:
            modem.feed(chunk)
        assert modem.mode in (PortMode.VOICE, PortMode.COMMAND)
        assert all(isinstance(e, (CallOffered, CallAbandoned, DtmfReceived, FarEndGone, Notice)) for e in events)
        audio = modem.audio
        while audio.read_frame_nowait() is not None:
            pass
        stats = audio.statistics()
        assert stats.rx_depth_bytes < 320
        audio.write_frame(bytes(320))  # the bridge's write never raises, whatever state we are in
        modem.connection_lost(None)

    asyncio.run(run())


def test_dtmf_in_a_random_stream_still_reaches_the_machine():
    async def run() -> None:
        modem, events = await answered_modem(CONEXANT)
        modem.feed(b"\x80\x7f\x10\x10\x10/\x107\x10")
        modem.feed(b"7\x10~\x81")
        assert [e for e in events if isinstance(e, DtmfReceived)] == [DtmfReceived("7")]
        modem.feed(b"\x10b")
        assert [e for e in events if isinstance(e, FarEndGone)] == [FarEndGone("busy tone")]
        modem.connection_lost(None)

    asyncio.run(run())


def test_dle_event_dataclass_is_frozen():
    ev = DleEvent(VoiceEvent.BUSY, "b")
    try:
        ev.code = "d"  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("DleEvent must be frozen")


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(max_size=60), max_size=20), times=st.lists(st.floats(0, 100), max_size=20))
def test_random_command_mode_lines_never_crash_the_machine(lines, times):
    from drivers.voicemodem.state import LineMachine

    m = LineMachine()
    now = 0.0
    for i, line in enumerate(["RING", *lines]):
        now += times[i] if i < len(times) else 0.1
        for event in m.on_line(line, now) + m.on_timer(now):
            assert isinstance(event, (CallOffered, CallAbandoned, Notice))
