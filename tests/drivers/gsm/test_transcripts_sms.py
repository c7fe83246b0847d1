"""transcripts.md cases 7, 9, 10, 12, 15, 16, 17 through the real driver over a pty."""
from datetime import datetime, timedelta, timezone

import pytest

from drivers.gsm import pdu
from drivers.gsm.events import SmsReceived, SmsSendFailed, SmsSent, SmsStatus, SmsUndecodable
from drivers.gsm.sms import SmsSendError
from tests.drivers.gsm.test_pdu import CASE7, CASE9, CASE10


class Store:
    """The owner's persist callback: records what was persisted before any AT+CMGD."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.saved: list = []
        self.deleted_before_persist: list[str] = []

    async def __call__(self, ev) -> None:
        self.deleted_before_persist += [c for c in self.sim.received if c.startswith("AT+CMGD")]
        self.saved.append(ev)


def tz(h, m=0):
    return timezone(timedelta(hours=h, minutes=m))


async def test_case7_cmti_read_persist_then_delete(sims, attach):
    sim = sims("generic")
    store = Store(sim)
    sim.script("AT+CMGR=3", [b"\r\n+CMGR: 0,,54\r\n" + CASE7.encode() + b"\r\n\r\nOK\r\n"])
    async with attach(sim, serve=True, persist=store) as (m, events):
        m.sms.storage = "SM"
        sim.send(b'\r\n+CMTI: "SM",3\r\n')
        [ev] = await events.wait_for(SmsReceived)
        await sim.wait_received("AT+CMGD=3")
    assert ev.sender == "+447700900123" and ev.text == "Total: 12€ [paid] {ref~42} ^|\\"
    assert ev.timestamp == datetime(2024, 3, 15, 14, 30, 45, tzinfo=tz(1))
    assert ev.complete and ev.parts == 1 and ev.raw_pdus == (CASE7,)
    assert store.saved == [ev] and store.deleted_before_persist == []
    assert "AT+CPMS=\"SM\"" not in sim.received  # storage already SM: no switch


async def test_case9_megafon_part_held_then_incomplete_after_timeout(sims, attach):
    sim = sims("generic", storage="ME")
    store = Store(sim)
    sim.script("AT+CMGR=12", [b"\r\n+CMGR: 0,,160\r\n" + CASE9.encode() + b"\r\n\r\nOK\r\n"])
    async with attach(sim, serve=True, persist=store) as (m, events):
        m.sms.storage = "ME"
        sim.send(b'\r\n+CMTI: "ME",12\r\n')
        await sim.wait_received("AT+CMGR=12")
        await m.ch.command("AT")  # queued behind the worker's AT+CMGR: the part has been handled
        assert len(m.sms.reassembler) == 1
        assert events.of(SmsReceived) == [] and "AT+CMGD=12" not in sim.received  # held, not shown
        m.sms.reassembler.timeout_s = 0  # the 24 h timeout elapses
        await m.sms.expire()
        [ev] = events.of(SmsReceived)
        await sim.wait_received("AT+CMGD=12")
    assert ev.sender == "Megafon" and not ev.complete and ev.parts == 2
    assert ev.text == "SMS code: 4856, confirmation of association between account and Meg"
    assert ev.timestamp == datetime(2014, 5, 27, 14, 1, 48, tzinfo=tz(4))


async def test_case10_three_parts_out_of_order(sims, attach):
    sim = sims("generic")
    store = Store(sim)
    lens = {1: 97, 2: 131, 3: 105}
    for idx, seq in ((5, 3), (6, 1), (7, 2)):
        sim.script(f"AT+CMGR={idx}", [f"\r\n+CMGR: 0,,{lens[seq]}\r\n{CASE10[seq]}\r\n\r\nOK\r\n".encode()])
    async with attach(sim, serve=True, persist=store) as (m, events):
        m.sms.storage = "SM"
        sim.send(b'\r\n+CMTI: "SM",5\r\n')
        await sim.wait_received("AT+CMGR=5")
        sim.send(b'\r\n+CMTI: "SM",6\r\n')
        await sim.wait_received("AT+CMGR=6")
        assert events.of(SmsReceived) == []
        sim.send(b'\r\n+CMTI: "SM",7\r\n')
        [ev] = await events.wait_for(SmsReceived)
        for i in (5, 6, 7):
            await sim.wait_received(f"AT+CMGD={i}")
    assert ev.text == ("Olá! Esta é a parte um da mensagem; continua aqui na parte dois com acentuação: ção, ão; "
                       "e termina na parte três. Obrigado — fim.")
    assert ev.complete and ev.parts == 3 and ev.sender == "+351912345678"
    assert ev.timestamp == datetime(2024, 6, 1, 21, 15, 1, tzinfo=tz(1))
    assert store.deleted_before_persist == []


async def test_case12_cmti_between_prompt_and_cmgs(sims, attach):
    sim = sims("generic")
    submit = "0031000C914477000910320000AA14C8329BFD0699E5EF36482C0FBBC768504C06"
    sim.script("AT+CMGS=32", [b"\r\n> ", b'\r\n+CMTI: "SM",4\r\n'])
    sim.script(submit, [b'\r\n+CDSI: "SR",9\r\n\r\n+CMGS: 17\r\n\r\nOK\r\n'])
    earlier = pdu.encode_status_report(16, "+447700900123", datetime(2024, 7, 9, 10, 0, tzinfo=tz(0)),
                                       datetime(2024, 7, 9, 10, 0, 5, tzinfo=tz(0)), 0)
    sim.model.stores["SR"][9] = earlier.hex
    sim.model.stores["SM"][4] = pdu.encode_deliver("+447700900999", "hi", datetime(2024, 7, 9, tzinfo=tz(0))).hex
    async with attach(sim, serve=True) as (m, events):
        m.sms.storage = "SM"
        sent = await m.sms.send("+447700900123", "Hello from branch 12")
        assert sent.references == (17,)
        [got] = await events.wait_for(SmsReceived)
        [status] = await events.wait_for(SmsStatus)
    i = sim.received.index
    assert i("AT+CMGS=32") < i(submit) < i("AT+CMGR=4")  # reading index 4 waited for OK
    assert got.text == "hi"
    assert status.mr == 16 and status.message_id is None  # a report for an earlier message, not MR 17


async def test_case15_status_reports_via_cds(sims, attach):
    sim = sims("generic")
    sim.model.mr = 41  # the next two submissions get TP-MR 42 and 43
    async with attach(sim, serve=True) as (m, events):
        a = await m.sms.send("+919876543210", "first")
        b = await m.sms.send("+919876543210", "second")
        assert (a.references, b.references) == ((42,), (43,))
        r = await m.ch.command("AT+CNMI=2,1,0,1,0")
        assert r.final == "OK"
        sim.send(b"\r\n+CDS: 25\r\n0791198901509141062A0C91198967452301427090011121224270900111022200\r\n")
        sim.send(b"\r\n+CDS: 25\r\n0791198901509141062B0C91198967452301427090012100224270010121502246\r\n")
        s1, s2 = await events.wait_for(SmsStatus, 2)
    assert (s1.mr, s1.status, s1.outcome, s1.message_id) == (42, 0, "delivered", a.message_id)
    assert s1.discharge == datetime(2024, 7, 9, 10, 11, 20, tzinfo=tz(5, 30))
    assert (s2.mr, s2.status, s2.outcome, s2.message_id) == (43, 0x46, "failed", b.message_id)


async def test_case16_cdsi_read_fails_with_321(sims, attach):
    sim = sims("simcom")
    submit = "0011000C914477000910320000AA05E8329BFD06"
    sim.script("AT+CMGS=19", [b"\r\n> "])
    sim.script(submit, [b"\r\n+CMGS: 40\r\n\r\nOK\r\n"])
    sim.script('AT+CPMS="SR"', [b"\r\n+CPMS: 0,0,3,23,3,23\r\n\r\nOK\r\n"])
    sim.script("AT+CMGR=8", [b"\r\n+CMS ERROR: 321\r\n"])
    async with attach(sim, serve=True) as (m, events):
        m.sms.storage = "SM"
        sent = await m.sms.send("+447700900123", "hello", status_report=False)
        assert sent.references == (40,)
        sim.send(b'\r\n+CDSI: "SR",8\r\n')
        await sim.wait_received("AT+CMGR=8")
        assert (await m.ch.command("AT")).final == "OK"  # the URC path survived the error
    assert events.of(SmsStatus) == []
    assert sim.received[-3:] == ['AT+CPMS="SR"', "AT+CMGR=8", "AT"]


async def test_case17_cms_500_retried_then_reported(sims, attach):
    sim = sims("generic")
    submit = "07913396050096F511000A8160223413500000FF04F4F29C0E"
    for _ in range(3):
        sim.script("AT+CMGS=17", [b"AT+CMGS=17\r\r\n> "])
        sim.script(submit, [submit.encode() + b"\r\n", b"\r\n+CMS ERROR: 500\r\n"])
    async with attach(sim, echo=True) as (m, events):
        with pytest.raises(SmsSendError, match="500"):
            await m.sms.send("0622433105", "test", smsc="+33695000695", status_report=False, validity=0xFF)
    assert sim.received.count(submit) == 3  # first try + two retries, the echoed PDU ignored each time
    [failed] = events.of(SmsSendFailed)
    assert failed.destination == "0622433105" and "+CMS ERROR: 500" in failed.reason
    assert events.of(SmsSent) == []


async def test_bad_pdu_kept_raw_persisted_then_deleted(sims, attach, caplog):
    sim = sims("generic")
    store = Store(sim)
    bad = "0791447758100650040C91447700091032000042305141035440FF0102"  # UDL 255, 2 octets of data
    sim.model.stores["SM"][2] = bad
    async with attach(sim, serve=True, persist=store) as (m, events):
        m.sms.storage = "SM"
        sim.send(b'\r\n+CMTI: "SM",2\r\n')
        [ev] = await events.wait_for(SmsUndecodable)
        await sim.wait_received("AT+CMGD=2")
    assert ev.raw_pdu == bad and ev.index == 2 and "truncated" in ev.reason
    assert store.saved == [ev]
    assert sum("undecodable SMS PDU" in r.message for r in caplog.records) == 1


async def test_invalid_index_and_memory_full_trigger_a_sweep(sims, attach):
    sim = sims("huawei")
    store = Store(sim)
    async with attach(sim, serve=True, persist=store) as (m, events):
        m.sms.storage = "SM"
        await sim.wait_received("AT+CMGL=4")  # the startup sweep
        for n in range(3):
            sim.model.store(pdu.encode_deliver("+447700900123", f"msg {n}", datetime(2024, 1, 1, tzinfo=tz(0))).hex)
        sim.send(b'\r\n^SMMEMFULL:"SM"\r\n')
        evs = await events.wait_for(SmsReceived, 3)
        sim.send(b'\r\n+CMTI: "SM",-1\r\n')
        await sim.wait_received("AT+CMGL=4", count=3)
    assert [e.text for e in evs] == ["msg 0", "msg 1", "msg 2"]
    assert sim.model.stores["SM"] == {}  # drained after persisting
