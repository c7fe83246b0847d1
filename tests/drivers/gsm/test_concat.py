from datetime import datetime, timedelta, timezone

from drivers.gsm import pdu
from drivers.gsm.concat import Reassembler
from tests.drivers.gsm.test_pdu import CASE9, CASE10

TS = "42601012513040"  # 2024-06-01 21:15:03 +01:00


def ucs2_part(payload: bytes, ref: int, total: int, seq: int, sender_bcd: str = "0C91447700091032") -> str:
    ud = bytes([5, 0, 3, ref, total, seq]) + payload
    return "0044" + sender_bcd + "0008" + TS + f"{len(ud):02X}" + ud.hex().upper()


def test_case10_out_of_order_delivers_once_in_sequence_order():
    r = Reassembler()
    got = []
    for n, (idx, seq) in enumerate([(5, 3), (6, 1), (7, 2)]):
        got += r.add(pdu.decode(CASE10[seq]), CASE10[seq], now=float(n), token=idx)
        if n < 2:
            assert got == []
    [msg] = got
    assert msg.text == ("Olá! Esta é a parte um da mensagem; continua aqui na parte dois com acentuação: ção, ão; "
                        "e termina na parte três. Obrigado — fim.")
    assert msg.complete and msg.parts == 3 and msg.received == (1, 2, 3)
    assert msg.timestamp == datetime(2024, 6, 1, 21, 15, 1, tzinfo=timezone(timedelta(hours=1)))
    assert sorted(msg.tokens) == [5, 6, 7]
    assert msg.raw_pdus == (CASE10[1], CASE10[2], CASE10[3])
    assert len(r) == 0


def test_case9_held_until_timeout_then_delivered_incomplete():
    r = Reassembler(timeout_s=100)
    assert r.add(pdu.decode(CASE9), CASE9, now=0, token=12) == []
    assert r.next_deadline() == 100
    assert r.expire(99) == []
    [msg] = r.expire(100)
    assert msg.sender == "Megafon" and not msg.complete and msg.received == (1,) and msg.parts == 2
    assert msg.text.startswith("SMS code: 4856") and msg.tokens == (12,)


def test_duplicates_ignored_but_their_slots_kept():
    r = Reassembler()
    one = ucs2_part("hi ".encode("utf-16-be"), 1, 2, 1)
    two = ucs2_part("there".encode("utf-16-be"), 1, 2, 2)
    assert r.add(pdu.decode(one), one, 0, "a") == []
    assert r.add(pdu.decode(one), one, 1, "b") == []
    [msg] = r.add(pdu.decode(two), two, 2, "c")
    assert msg.text == "hi there" and msg.tokens == ("a", "b", "c")


def test_emoji_surrogate_pair_split_across_parts_survives():
    raw = ("A" * 66 + "😀" + "B").encode("utf-16-be")
    p1, p2 = raw[:134], raw[134:]  # the cut falls between the two surrogate halves
    assert 0xD8 <= p1[-2] <= 0xDB
    h1, h2 = ucs2_part(p1, 200, 2, 1), ucs2_part(p2, 200, 2, 2)
    r = Reassembler()
    r.add(pdu.decode(h2), h2, 0)
    [msg] = r.add(pdu.decode(h1), h1, 1)
    assert msg.text == "A" * 66 + "😀" + "B"


def test_reused_reference_with_different_content_starts_a_new_set():
    r = Reassembler()
    a1 = ucs2_part("old".encode("utf-16-be"), 5, 2, 1)
    b1 = ucs2_part("new".encode("utf-16-be"), 5, 2, 1)
    b2 = ucs2_part("er".encode("utf-16-be"), 5, 2, 2)
    assert r.add(pdu.decode(a1), a1, 0, 1) == []
    [old] = r.add(pdu.decode(b1), b1, 1, 2)
    assert old.text == "old" and not old.complete and old.tokens == (1,)
    [new] = r.add(pdu.decode(b2), b2, 2, 3)
    assert new.text == "newer" and new.complete


def test_invalid_headers_are_delivered_stand_alone():
    bad = ucs2_part("zero".encode("utf-16-be"), 9, 2, 0)
    [msg] = Reassembler().add(pdu.decode(bad), bad, 0, 4)
    assert msg.text == "zero" and msg.complete and msg.parts == 1
