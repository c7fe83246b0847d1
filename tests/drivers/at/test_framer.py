import pytest

from drivers.at.framer import AtFramer, Line, Prompt


def feed_all(data: bytes, mode: str) -> list:
    f, got = AtFramer(), []
    if mode == "whole":
        got += f.feed(data)
    elif mode == "bytewise":
        for b in data:
            got += f.feed(bytes([b]))
    else:  # split in 3-byte chunks
        for i in range(0, len(data), 3):
            got += f.feed(data[i : i + 3])
    return got


MODES = ["whole", "bytewise", "chunks"]


@pytest.mark.parametrize("mode", MODES)
def test_lines_prompt_and_urc(mode):
    got = feed_all(b'\r\nOK\r\n\r\n+CMTI: "SM",3\r\n> ', mode)
    assert got == [Line("OK"), Line('+CMTI: "SM",3'), Prompt()]


@pytest.mark.parametrize("mode", MODES)
def test_echo_with_bare_cr_is_a_line(mode):
    got = feed_all(b"AT+CGMI\r\r\nhuawei\r\n\r\nOK\r\n", mode)
    assert got == [Line("AT+CGMI"), Line("huawei"), Line("OK")]


def test_expected_echo_is_dropped_once():
    f = AtFramer()
    f.expect_echo("AT+CGMI")
    assert f.feed(b"AT+CGMI\r\r\nhuawei\r\n\r\nOK\r\nAT+CGMI\r") == [Line("huawei"), Line("OK"), Line("AT+CGMI")]


def test_simcom_prompt_with_crlf_and_echo_before_prompt():
    f = AtFramer()
    f.expect_echo("AT+CMGS=17")
    assert f.feed(b"AT+CMGS=17\r\r\n> ") == [Prompt()]
    assert AtFramer().feed(b"\r\n>\r\n") == [Prompt()]


def test_doubled_cr_and_huawei_list_lines():
    got = feed_all(b"&C\r\r\n&D\r\r\n\r\r\nRING\r\r\nOK\r\n", "whole")
    assert got == [Line("&C"), Line("&D"), Line("RING"), Line("OK")]


def test_garbage_is_cleaned_and_never_raises():
    f = AtFramer()
    got = f.feed(b"\x00\xff\xfe\x01OK\x02\r\n")
    assert got == [Line("\ufffd\ufffdOK")]
    assert f.feed(b"\r\nOK\r\n") == [Line("OK")]


def test_overlong_garbage_is_discarded_then_resyncs():
    f = AtFramer()
    assert f.feed(b"x" * (AtFramer.MAX_BUFFER + 10)) == []
    assert f.discarded_bytes == AtFramer.MAX_BUFFER + 10
    assert f.feed(b"\r\nOK\r\n") == [Line("OK")]


@pytest.mark.parametrize("mode", MODES)
def test_multiline_cusd_is_joined(mode):
    got = feed_all(b'\r\n+CUSD: 1,"Menu\r\n1 Balance\r\n2 Data",15\r\n\r\nOK\r\n', mode)
    assert got == [Line('+CUSD: 1,"Menu\n1 Balance\n2 Data",15'), Line("OK")]


from hypothesis import given, strategies as st

STREAM = (b'AT+CSQ\r\r\n+CSQ: 14,99\r\n\r\n^RSSI:14\r\n\r\nOK\r\n\r\n> \r\n+CMTI: "SM",4\r\n'
          b'\r\n+CUSD: 1,"a\r\nb",15\r\n\r\n\x00\xffjunk\r\r\nRING\r\r\n')


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_items(cuts):
    whole = AtFramer().feed(STREAM)
    f, got, prev = AtFramer(), [], 0
    for cut in sorted(set(cuts)) + [len(STREAM)]:
        got += f.feed(STREAM[prev:cut])
        prev = cut
    assert got == whole
    assert Prompt() in whole and Line("RING") in whole
