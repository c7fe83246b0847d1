"""+VSM=? parsing, per-profile format choice, and conversion through audioop."""
import math
import struct

import pytest

from drivers.sim.analog import AGERE, CONEXANT, USR_5637
from drivers.voicemodem import profiles
from drivers.voicemodem.formats import (
    Encoding,
    FormatError,
    SampleConverter,
    choose_format,
    classify,
    parse_vsm_options,
)


def test_parse_usr_options():
    fmts = parse_vsm_options(list(USR_5637.vsm_options) + ["OK"])
    assert [(f.cml, f.encoding) for f in fmts] == [
        (1, Encoding.UNSIGNED8),
        (128, Encoding.UNSIGNED8),
        (129, Encoding.UNSUPPORTED),
        (130, Encoding.UNSIGNED8),
        (131, Encoding.ULAW),
        (132, Encoding.ALAW),
        (133, Encoding.LINEAR16),
    ]
    assert fmts[0].rates == ((7200, 7200), (8000, 8000))


@pytest.mark.parametrize(
    ("profile", "options", "cml"),
    [
        (profiles.USR_5637, USR_5637.vsm_options, 128),  # 8-bit unsigned, by its known-good name
        (profiles.CONEXANT, CONEXANT.vsm_options, 1),
        (profiles.AGERE, AGERE.vsm_options, 130),  # u-law: code 130 on Agere, 131 on USR
        (profiles.V253, USR_5637.vsm_options, 131),  # generic prefers G.711 (fits 115200 baud)
        (profiles.V253, CONEXANT.vsm_options, 1),  # ... and falls back to what the modem has
    ],
)
def test_choice_follows_profile_and_modem_codes(profile, options, cml):
    fmt, rate = choose_format(parse_vsm_options(options), profile.encodings, profile.format_names)
    assert (fmt.cml, rate) == (cml, 8000)


def test_rate_fallback_and_range_syntax():
    fmts = parse_vsm_options(['+VSM: 130,"ULAW",8,0,(7200-7400),(0),(0)'])
    fmt, rate = choose_format(fmts, (Encoding.ULAW,))
    assert (fmt.cml, rate) == (130, 7400)


def test_nothing_usable():
    with pytest.raises(FormatError):
        choose_format(parse_vsm_options(['129,"IMA ADPCM",4,0,(8000),(0),(0)']), profiles.V253.encodings)


def test_classify_names():
    assert classify("SIGNED PCM", 8) is Encoding.SIGNED8
    assert classify("SIGNED PCM", 16) is Encoding.LINEAR16
    assert classify("16-BIT LINEAR", 16) is Encoding.LINEAR16
    assert classify("A-LAW", 8) is Encoding.ALAW
    assert classify("mu-law", 8) is Encoding.ULAW


def tone(n=800, amp=12000):
    return struct.pack(f"<{n}h", *(int(amp * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(n)))


def corr(a: bytes, b: bytes) -> float:
    import numpy as np

    x = np.frombuffer(a, "<i2").astype(float)
    y = np.frombuffer(b, "<i2").astype(float)
    return float(np.corrcoef(x, y)[0, 1])


def test_unsigned8_silence_and_extremes():
    conv = SampleConverter(Encoding.UNSIGNED8)
    assert conv.to_pcm(b"\x80\x80") == b"\x00\x00\x00\x00"
    assert struct.unpack("<2h", conv.to_pcm(b"\x00\xff")) == (-32768, 127 * 256)
    assert conv.from_pcm(b"\x00\x00") == b"\x80"


@pytest.mark.parametrize("encoding", [Encoding.UNSIGNED8, Encoding.SIGNED8, Encoding.LINEAR16, Encoding.ULAW,
                                      Encoding.ALAW])
def test_roundtrip_keeps_the_signal(encoding):
    pcm = tone()
    conv = SampleConverter(encoding)
    back = conv.to_pcm(conv.from_pcm(pcm))
    assert len(back) == len(pcm)
    assert corr(pcm, back) > 0.99


def test_linear16_odd_split_is_reassembled():
    pcm = tone(10)
    conv = SampleConverter(Encoding.LINEAR16)
    out = conv.to_pcm(pcm[:3]) + conv.to_pcm(pcm[3:7]) + conv.to_pcm(pcm[7:])
    assert out == pcm


def test_resampled_rate():
    conv = SampleConverter(Encoding.ULAW, 7200)
    modem = conv.from_pcm(tone(8000))
    assert abs(len(modem) - 7200) <= 2
    assert abs(len(conv.to_pcm(modem)) - 16000) <= 4
