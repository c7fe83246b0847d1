"""PDU codec tests from byte tables (transcripts.md cases 7, 9, 10, 12, 15, 16, 17 and hand-built vectors)."""
from datetime import datetime, timedelta, timezone

import pytest

from drivers.gsm import gsm7, pdu
from drivers.gsm.pdu import Concat, Deliver, PduError, StatusReport, Submit


def tz(h: int, m: int = 0) -> timezone:
    return timezone(timedelta(hours=h, minutes=m))


CASE7 = "0791447758100650040C9144770009103200004230514103544027D4373DCCD68162B24D19B4E1C1C369F2C607DAA0E465F3A647936D52A00D6503DCBC00"
CASE9 = "07919762020033F1400DD0CDF2396C7EBB010008415072411084618C0500035602010053004D005300200063006F00640065003A00200034003800350036002C00200063006F006E006600690072006D006100740069006F006E0020006F00660020006100730073006F00630069006100740069006F006E0020006200650074007700650065006E0020006100630063006F0075006E007400200061006E00640020004D00650067"
CASE10 = {
    3: "0791539111161616440C91539121436587000842601012513040560500032C030300650020007400650072006D0069006E00610020006E006100200070006100720074006500200074007200EA0073002E0020004F006200720069006700610064006F00202014002000660069006D002E",
    1: "0791539111161616440C915391214365870008426010125110404E0500032C0301004F006C00E1002100200045007300740061002000E90020006100200070006100720074006500200075006D0020006400610020006D0065006E0073006100670065006D003B0020",
    2: "0791539111161616440C91539121436587000842601012512040700500032C03020063006F006E00740069006E00750061002000610071007500690020006E006100200070006100720074006500200064006F0069007300200063006F006D0020006100630065006E00740075006100E700E3006F003A002000E700E3006F002C002000E3006F003B0020",
}


def test_case7_gsm7_extension_table():
    m = pdu.decode(CASE7)
    assert isinstance(m, Deliver)
    assert m.smsc == "+447785016005" and m.sender == "+447700900123" and m.sender_toa == 0x91
    assert (m.pid, m.dcs) == (0, 0)
    assert m.timestamp == datetime(2024, 3, 15, 14, 30, 45, tzinfo=tz(1))
    assert m.text == "Total: 12€ [paid] {ref~42} ^|\\"
    assert len(m.text) == 30 and m.ud.udl == 39 == gsm7.septet_count(m.text)
    assert m.ud.concat is None


def test_case9_alphanumeric_sender_ucs2_concat_part():
    m = pdu.decode(CASE9)
    assert m.smsc == "+79262000331" and m.sender == "Megafon" and m.sender_toa == 0xD0
    assert m.dcs == 8 and m.ud.encoding == "ucs2"
    assert m.timestamp == datetime(2014, 5, 27, 14, 1, 48, tzinfo=tz(4))
    assert m.ud.concat == Concat(ref=86, total=2, seq=1, iei=0)
    assert m.text == "SMS code: 4856, confirmation of association between account and Meg"
    assert len(m.text) == 67 and m.more_messages


@pytest.mark.parametrize(
    "seq,ts,text",
    [
        (1, datetime(2024, 6, 1, 21, 15, 1, tzinfo=tz(1)), "Olá! Esta é a parte um da mensagem; "),
        (2, datetime(2024, 6, 1, 21, 15, 2, tzinfo=tz(1)), "continua aqui na parte dois com acentuação: ção, ão; "),
        (3, datetime(2024, 6, 1, 21, 15, 3, tzinfo=tz(1)), "e termina na parte três. Obrigado — fim."),
    ],
)
def test_case10_parts(seq, ts, text):
    m = pdu.decode(CASE10[seq])
    assert m.smsc == "+351911616161" and m.sender == "+351912345678"
    assert m.ud.concat == Concat(0x2C, 3, seq, 0)
    assert m.timestamp == ts and m.text == text


def test_case15_status_reports():
    a = pdu.decode("0791198901509141062A0C91198967452301427090011121224270900111022200")
    assert isinstance(a, StatusReport)
    assert (a.smsc, a.mr, a.recipient, a.status, a.outcome) == ("+919810051914", 42, "+919876543210", 0, "delivered")
    assert a.scts == datetime(2024, 7, 9, 10, 11, 12, tzinfo=tz(5, 30))
    assert a.discharge == datetime(2024, 7, 9, 10, 11, 20, tzinfo=tz(5, 30))
    b = pdu.decode("0791198901509141062B0C91198967452301427090012100224270010121502246")
    assert (b.mr, b.status, b.outcome) == (43, 0x46, "failed")
    assert b.discharge == datetime(2024, 7, 10, 10, 12, 5, tzinfo=tz(5, 30))


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(destination="+447700900123", text="Hello from branch 12"),
         ("0031000C914477000910320000AA14C8329BFD0699E5EF36482C0FBBC768504C06", 32)),   # case 12
        (dict(destination="+447700900123", text="hello", status_report=False),
         ("0011000C914477000910320000AA05E8329BFD06", 19)),                               # case 16
        (dict(destination="0622433105", text="test", smsc="+33695000695", status_report=False, validity=0xFF),
         ("07913396050096F511000A8160223413500000FF04F4F29C0E", 17)),                     # case 17
    ],
)
def test_encode_submit_matches_transcripts(kwargs, expected):
    [out] = pdu.encode_submit(**kwargs)
    assert (out.hex, out.tpdu_length) == expected
    back = pdu.decode(out.hex)
    assert isinstance(back, Submit) and back.text == kwargs["text"]


def test_16bit_reference_udh_has_no_fill_bits():
    # UDH 06 08 04 1234 02 01 = 7 octets = exactly 8 septets, so "Hello" starts at bit 0.
    hexpdu = "00440C914477000910320000423051410354400D06080412340201C8329BFD06"
    m = pdu.decode(hexpdu)
    assert m.ud.concat == Concat(0x1234, 2, 1, 0x08)
    assert m.text == "Hello"


def test_8bit_reference_gsm7_has_one_fill_bit_roundtrip():
    out = pdu.encode_deliver("+447700900123", "Hello", datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz(-5)),
                             smsc=None, concat=Concat(7, 2, 2, 0))
    m = pdu.decode(out.hex)
    assert m.text == "Hello" and m.ud.udl == 7 + 5 and m.ud.concat == Concat(7, 2, 2, 0)
    assert m.timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz(-5))


def test_negative_timezone_octet():
    # TZ octet 0A = -05:00 (sign in bit 3)
    hexpdu = "00040C914477000910320000423051410354" + "0A" + "05E8329BFD06"
    assert pdu.decode(hexpdu).timestamp.utcoffset() == timedelta(hours=-5)


def test_long_text_splits_and_ucs2_when_needed():
    parts = pdu.encode_submit("+447700900123", "x" * 200, ref=9)
    assert len(parts) == 2
    decoded = [pdu.decode(p.hex) for p in parts]
    assert [d.ud.concat for d in decoded] == [Concat(9, 2, 1, 0), Concat(9, 2, 2, 0)]
    assert "".join(d.text for d in decoded) == "x" * 200
    assert [d.ud.udl for d in decoded] == [7 + 153, 7 + 47]
    [u] = pdu.encode_submit("+447700900123", "Привет 😀")
    d = pdu.decode(u.hex)
    assert d.dcs == 8 and d.text == "Привет 😀"


def test_escape_pair_never_split_between_parts():
    text = "a" * 152 + "€" + "b" * 10
    parts = [pdu.decode(p.hex) for p in pdu.encode_submit("+447700900123", text)]
    assert "".join(p.text for p in parts) == text
    assert parts[0].text == "a" * 152


@pytest.mark.parametrize(
    "bad",
    ["", "zz", "0791447758100650040C91447700", CASE7[:-20], "07914477581006500300"],
)
def test_bad_pdus_raise_pdu_error(bad):
    with pytest.raises(PduError):
        pdu.decode(bad)


def test_unknown_escape_decodes_as_space():
    assert gsm7.from_septets([0x41, 0x1B, 0x01, 0x42]) == "A B"
