"""Pure tests: URC parsing per vendor and the call state machine's transition table."""
import pytest

from appliance.lines import CallerId, HangupCause
from drivers.at.channel import Urc
from drivers.gsm import calls as cm
from drivers.gsm import urc
from drivers.gsm.profiles import GENERIC, HUAWEI, QUECTEL, SIMCOM


@pytest.mark.parametrize("text,profile,expected", [
    ('+CLIP: "+1234567890",145,,,,0', HUAWEI, urc.Clip("+1234567890", 145, 0, None)),
    ('+CLIP: "",128,"",0,"",1', GENERIC, urc.Clip(None, 128, 1, None)),
    ('+CLIP: "+447700900123",145', GENERIC, urc.Clip("+447700900123", 145, 0, None)),
    ('+CLIP: "+447700900123",145,"",0,"Bob",0', GENERIC, urc.Clip("+447700900123", 145, 0, "Bob")),
    ("^CEND:1,0,104,16", HUAWEI, urc.CallEnd("^CEND", 1, 0, 104, 16)),
    ("VOICE CALL: END: 000030", SIMCOM, urc.CallEnd("VOICE CALL: END", duration_s=30)),
    ("VOICE CALL: END: 95", SIMCOM, urc.CallEnd("VOICE CALL: END", duration_s=95)),
    ("VOICE CALL: BEGIN", SIMCOM, urc.CallProgress("connected", None)),
    ("MISSED_CALL: 10:23AM +447700900123", SIMCOM, urc.CallEnd("MISSED_CALL")),
    ("BUSY", GENERIC, urc.CallEnd("BUSY", cause=17)),
    ("^RSSI: 15", HUAWEI, urc.Signal(15)),
    ("^MODE:5,4", HUAWEI, urc.Noise("^MODE:5,4")),
    ('+CMTI: "SM",-1', HUAWEI, urc.NewSms("SM", -1)),
    ('+CDSI: "SR",9', GENERIC, urc.StatusStored("SR", 9)),
    ('+CREG: 1,"1F54","15A",2', GENERIC, urc.Registration(1, "1F54", "15A")),
    ("+RXDTMF: 5", SIMCOM, urc.Dtmf("5", None)),
    ("+QTONEDET: 35", QUECTEL, urc.Dtmf("#", None)),
    ('+CLCC: 1,1,4,0,0,"+44",145', GENERIC, urc.CallStatus(1, 1, 4, "+44")),
    # Quectel ^DSCI (modems.md A.7): its <stat> is mapped to the +CLCC numbering the machine uses
    ("^DSCI: 1,0,2,0,+447700900123,129", QUECTEL, urc.CallStatus(1, 0, 2, "+447700900123", "^DSCI")),
    ("^DSCI: 4,1,3,0,+447700900123,145", QUECTEL, urc.CallStatus(4, 1, 0, "+447700900123", "^DSCI")),  # connected
    ("^DSCI: 3,0,6,0,07700900123,129", QUECTEL, urc.CallStatus(3, 0, 6, "07700900123", "^DSCI")),  # released
    ('^DSCI: 1,0,3,0,"+447700900123",145', QUECTEL, urc.CallStatus(1, 0, 0, "+447700900123", "^DSCI")),  # quoted
    ("^DSCI: 1,0,7,0,+447700900123,145", QUECTEL, urc.CallStatus(1, 0, 3, "+447700900123", "^DSCI")),  # alerting
    ("^DSCI: 2,1,4,0,,128", QUECTEL, urc.CallStatus(2, 1, 4, None, "^DSCI")),  # withheld caller
    ("^DSCI: 1,0,3,1,+447700900123,145", QUECTEL, urc.Noise("^DSCI: 1,0,3,1,+447700900123,145")),  # a data call
    ("^DSCI: 1,0,9,0,+447700900123,145", QUECTEL, urc.Unknown("^DSCI: 1,0,9,0,+447700900123,145")),
    ('+CIEV: "SMSFULL",1', GENERIC, urc.MemoryFull("SM")),
    ("\ufffd\ufffdgarbage", GENERIC, urc.Unknown("\ufffd\ufffdgarbage")),
])
def test_parse(text, profile, expected):
    assert urc.parse(Urc(text), profile) == expected


def test_cmt_body_is_kept():
    assert urc.parse(Urc("+CMT: ,24", "0791AB"), GENERIC) == urc.SmsPdu("+CMT", "0791AB")


def test_ring_then_clip_offers_once_and_updates():
    m = cm.CallMachine(GENERIC)
    assert m.handle(urc.Ring("VOICE")) == []
    assert m.state is cm.CallState.RINGING
    [offer] = m.handle(urc.Clip("+441", 145, 0, None))
    assert offer == cm.Offer(CallerId("+441"))
    assert m.handle(urc.Ring("VOICE")) == [] and m.handle(urc.Clip("+441", 145, 0, None)) == []


def test_quectel_answer_enables_audio_generic_does_not():
    for profile, audio in ((QUECTEL, True), (GENERIC, False)):
        m = cm.CallMachine(profile)
        m.handle(urc.Clip("+441", 145, 0, None))
        effects = m.handle(cm.Answered())
        assert m.state is cm.CallState.ACTIVE
        assert (cm.EnableAudio() in effects) is audio


def test_simcom_waits_for_voice_call_begin():
    m = cm.CallMachine(SIMCOM)
    m.handle(urc.Ring("VOICE"))
    assert m.handle(cm.Answered()) == [] and m.state is cm.CallState.ANSWERING
    assert cm.EnableAudio() in m.handle(urc.CallProgress("connected", None))


def test_end_causes():
    m = cm.CallMachine(GENERIC)
    m.handle(urc.Ring("VOICE"))
    [ended] = m.handle(cm.RingTimeout())
    assert ended.cause is HangupCause.CANCELLED and not ended.answered
    m.handle(cm.Dialled("+441"))
    [ended] = m.handle(urc.CallEnd("BUSY", cause=17))
    assert ended.cause is HangupCause.REJECTED and "user busy" in ended.detail
    m.handle(urc.Clip("+441", 145, 0, None))
    m.handle(cm.Answered())
    [ended] = m.handle(cm.Lost())
    assert ended.cause is HangupCause.LINE_LOST and ended.answered
    assert m.handle(urc.CallEnd("NO CARRIER")) == []  # a late hang-up URC with no call is ignored


def test_invalid_transition_raises():
    m = cm.CallMachine(GENERIC)
    m.handle(urc.Ring("VOICE"))
    with pytest.raises(cm.InvalidTransition):
        m.handle(cm.Dialled("+441"))
