"""DLE framing: transcripts 36, 37 and 39 (framing parts) fed whole and one byte at a time."""
import pytest

from drivers.voicemodem.dle import (
    DTE_ABORT_TX,
    DTE_STOP_RX,
    Audio,
    DleDecoder,
    DleEvent,
    Direction,
    VoiceEvent,
    shield,
)


def chunked(chunks, mode):
    """The same byte stream as the transcript's reads, as whole reads or one byte at a time."""
    if mode == "whole":
        return list(chunks)
    return [bytes([b]) for chunk in chunks for b in chunk]


def decode(chunks, mode, **kw):
    dec = DleDecoder(**kw)
    items = []
    for chunk in chunked(chunks, mode):
        items += dec.feed(chunk)
    return dec, items


def split(items):
    audio = b"".join(i.data for i in items if isinstance(i, Audio))
    events = [(i.kind, i.code) for i in items if isinstance(i, DleEvent)]
    return audio, events


MODES = ["whole", "byte_at_a_time"]


@pytest.mark.parametrize("mode", MODES)
def test_transcript_37_dtmf_groups_and_split_escape(mode):
    reads = [
        b"\x80\x81\x10/\x10",  # read #1 ends right after a <DLE>
        b"1\x101\x80\x10~\x80\x7f",
        b"\x10/\x104\x104\x104\x10~",
        b"\x10/\x10#\x10~",
        b"\x105",  # bare <DLE>5 from a modem without shielding
    ]
    _, items = decode(reads, mode)
    audio, events = split(items)
    assert [code for kind, code in events if kind is VoiceEvent.DTMF] == ["1", "4", "#", "5"]
    assert [kind for kind, _ in events] == [VoiceEvent.DTMF] * 4
    assert audio == b"\x80\x81" + b"\x80" + b"\x80\x7f"


@pytest.mark.parametrize("mode", MODES)
def test_transcript_36_silence_busy_and_end_of_stream_then_ok(mode):
    reads = [
        b"\x80\x81\x7f\x80\x82\x7e" * 400,
        b"\x80\x80\x10s\x80\x80",
        b"\x80\x10b\x80",
        b"\x80\x80\x10\x03",
        b"\r\nOK\r\n",
    ]
    dec, items = decode(reads, mode)
    audio, events = split(items)
    assert events == [(VoiceEvent.SILENCE, "s"), (VoiceEvent.BUSY, "b"), (VoiceEvent.END_OF_STREAM, "\x03")]
    assert audio == b"\x80\x81\x7f\x80\x82\x7e" * 400 + b"\x80\x80" + b"\x80\x80" + b"\x80" + b"\x80" + b"\x80\x80"
    assert dec.ended
    assert dec.take_rest() == b"\r\nOK\r\n"  # command-mode text after <DLE><ETX> is kept, not eaten
    assert dec.take_rest() == b""


@pytest.mark.parametrize("mode", MODES)
def test_transcript_39_underrun_and_handset_from_modem(mode):
    _, items = decode([b"\x10u", b"\x10P"], mode)
    assert split(items)[1] == [(VoiceEvent.UNDERRUN, "u"), (VoiceEvent.HANDSET_OFF_HOOK, "P")]


@pytest.mark.parametrize("mode", MODES)
def test_transcript_39_host_side_audio_then_abort(mode):
    # what the host writes: 100 ms of audio, 200 ms more, then <DLE><CAN><DLE><ETX>
    assert DTE_ABORT_TX == b"\x10\x18\x10\x03"
    dec, items = decode([b"\x80" * 800, b"\x80" * 1600, DTE_ABORT_TX], mode, direction=Direction.FROM_DTE)
    audio, events = split(items)
    assert audio == b"\x80" * 2400
    assert events == [(VoiceEvent.ABORT, "\x18"), (VoiceEvent.END_OF_STREAM, "\x03")]
    assert dec.ended


@pytest.mark.parametrize("mode", MODES)
def test_host_stop_receive(mode):
    assert DTE_STOP_RX == b"\x10!"
    _, items = decode([b"\x10!", b"\x10^"], mode, direction=Direction.FROM_DTE)
    assert split(items)[1] == [(VoiceEvent.STOP_RECEIVE, "!"), (VoiceEvent.STOP_RECEIVE, "^")]


@pytest.mark.parametrize("mode", MODES)
def test_doubled_dle_and_sub(mode):
    stream = [b"\x01\x10\x10\x02", b"\x10\x1a\x03\x10"]
    _, items = decode(stream + [b"\x10"], mode)
    assert split(items) == (b"\x01\x10\x02\x10\x10\x03\x10", [])
    # a profile where <DLE><SUB> is not two DLEs reports it as an unknown code
    _, items = decode(stream + [b"\x10"], mode, sub_is_two_dles=False)
    assert split(items) == (b"\x01\x10\x02\x03\x10", [(VoiceEvent.UNKNOWN, "\x1a")])


def test_far_end_and_misc_events():
    _, items = decode([b"\x10d\x10i\x10l\x10q\x10R\x10K\x10Z"], "whole")
    assert split(items)[1] == [
        (VoiceEvent.DIAL_TONE, "d"),
        (VoiceEvent.DIAL_TONE, "i"),
        (VoiceEvent.LOOP_BREAK, "l"),
        (VoiceEvent.QUIET, "q"),
        (VoiceEvent.RING, "R"),
        (VoiceEvent.BUSY, "K"),
        (VoiceEvent.UNKNOWN, "Z"),
    ]


def test_shield_doubles_every_dle_and_roundtrips():
    audio = bytes(range(256)) * 3
    shielded = shield(audio)
    assert shielded.count(b"\x10") == 2 * audio.count(b"\x10")
    assert b"\x10\x03" not in shielded.replace(b"\x10\x10", b"")  # no accidental end of stream
    _, items = decode([shielded], "byte_at_a_time")
    assert split(items) == (audio, [])


def test_after_end_of_stream_bytes_are_kept_bounded():
    dec = DleDecoder()
    assert split(dec.feed(b"\x80\x10\x03\r\nOK")) == (b"\x80", [(VoiceEvent.END_OF_STREAM, "\x03")])
    assert dec.feed(b"\r\n") == []
    assert dec.take_rest() == b"\r\nOK\r\n"
    dec.feed(b"x" * 10000)
    assert len(dec.take_rest()) == 4096
