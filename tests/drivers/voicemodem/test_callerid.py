"""Caller ID decoding: transcripts 32 and 34, plus bad checksums and both spacing styles."""
import pytest

from appliance.lines import CallerId
from drivers.voicemodem.callerid import (
    CallerIdError,
    FormattedCallerId,
    Presentation,
    decode_raw,
    encode_mdmf,
    is_raw_message,
    parse_tag_line,
)


def block(lines):
    cid = FormattedCallerId()
    for line in lines:
        tag = parse_tag_line(line)
        assert tag is not None, line
        cid.add(*tag)
    return cid.report()


def test_transcript_32_formatted_with_spaces():
    r = block(["DATE = 0314", "TIME = 1205", "NMBR = 5035551234", "NAME = SMITH JOHN"])
    assert (r.date, r.time, r.number, r.name) == ("0314", "1205", "5035551234", "SMITH JOHN")
    assert r.to_caller_id() == CallerId("5035551234", "SMITH JOHN", "available")


def test_usr_style_without_spaces_and_number_only():
    r = block(["NMBR=07700900123"])
    assert r.number == "07700900123" and r.name is None and r.date is None
    assert r.to_caller_id() == CallerId("07700900123", None, "available")


def test_transcript_34_formatted_private():
    r = block(["DATE = 1102", "TIME = 0815", "NMBR = P", "NAME = P"])
    assert r.number is None and r.name is None
    assert r.number_presentation is Presentation.WITHHELD
    assert r.to_caller_id() == CallerId(None, None, "withheld")


def test_formatted_unavailable_and_extra_tags():
    r = block(["NMBR = O", "NAME = O", "MESG = 0A0B"])
    assert r.to_caller_id() == CallerId(None, None, "unavailable")
    assert r.extra == (("MESG", "0A0B"),)


def test_non_cid_lines_are_not_tags():
    for line in ("RING", "OK", "DRON=20", "DROF=40", "CONNECT", "+VCID: 1"):
        assert parse_tag_line(line) is None


def test_transcript_34_raw_mdmf_full():
    line = "802201083033313431323035020A35303335353531323334070A534D495448204A4F484ED3"
    assert is_raw_message(line)
    r = decode_raw(line)
    assert r.trusted and r.source == "mdmf"
    assert (r.date, r.time, r.number, r.name) == ("0314", "1205", "5035551234", "SMITH JOHN")


def test_transcript_34_raw_mdmf_private():
    r = decode_raw("80100108313130323038313504015008015027")
    assert r.trusted
    assert (r.date, r.time) == ("1102", "0815")
    assert r.number_presentation is Presentation.WITHHELD and r.name_presentation is Presentation.WITHHELD
    assert r.to_caller_id() == CallerId(None, None, "withheld")


def test_transcript_34_raw_sdmf_out_of_area():
    r = decode_raw("040930333039313430354F0E")
    assert r.trusted and r.source == "sdmf"
    assert (r.date, r.time) == ("0309", "1405")
    assert r.to_caller_id() == CallerId(None, None, "unavailable")


def test_manual_example_with_bad_length_and_checksum_is_not_trusted():
    r = decode_raw("801E01083130313532303338")
    assert not r.trusted
    assert "checksum" in r.problem
    assert r.to_caller_id() == CallerId(None, None, "unavailable")


def test_one_flipped_bit_is_caught():
    good = "802201083033313431323035020A35303335353531323334070A534D495448204A4F484ED3"
    bad = good[:30] + ("6" if good[30] != "6" else "7") + good[31:]
    r = decode_raw(bad)
    assert not r.trusted and r.to_caller_id().number is None


def test_unknown_mdmf_parameter_kept_as_hex():
    params = bytes([0x02, 0x02]) + b"12" + bytes([0x0B, 0x01, 0xAA])
    body = bytes([0x80, len(params)]) + params
    line = (body + bytes([(-sum(body)) % 256])).hex().upper()
    r = decode_raw(line)
    assert r.trusted and r.number == "12" and r.extra == (("0x0B", "AA"),)


def test_encoder_matches_transcript_vector():
    assert encode_mdmf(datetime="03141205", number="5035551234", name="SMITH JOHN") == (
        "802201083033313431323035020A35303335353531323334070A534D495448204A4F484ED3"
    )
    assert encode_mdmf(datetime="11020815", number_absent="P", name_absent="P") == (
        "80100108313130323038313504015008015027"
    )


@pytest.mark.parametrize("line", ["OK", "RING", "5035551234", "8022ZZ", "0"])
def test_not_raw(line):
    assert not is_raw_message(line)
    with pytest.raises(CallerIdError):
        decode_raw(line)
