"""The line state machine with explicit times (no clocks, no I/O)."""
import pytest

from appliance.lines import CallerId
from drivers.voicemodem.dle import DleEvent, VoiceEvent
from drivers.voicemodem.state import (
    CallAbandoned,
    CallOffered,
    DtmfReceived,
    FarEndGone,
    InvalidTransition,
    LineMachine,
    LineState,
    Notice,
)

CID = ["DATE = 0314", "TIME = 1205", "NMBR = 5035551234", "NAME = SMITH JOHN"]


def feed(m, lines, now):
    out = []
    for line in lines:
        out += m.on_line(line, now)
    return out


def test_us_style_offer_after_block_settles_then_abandon():
    m = LineMachine()
    assert m.on_line("RING", 0.0) == []
    assert m.state is LineState.RINGING
    assert feed(m, CID, 2.5) == []
    assert m.next_deadline == pytest.approx(2.9)
    [offer] = m.on_timer(2.9)
    assert isinstance(offer, CallOffered)
    assert offer.caller.to_caller_id() == CallerId("5035551234", "SMITH JOHN", "available")
    assert (offer.caller.date, offer.caller.time) == ("0314", "1205")
    assert m.on_line("RING", 6.0) == []  # one offer per ring sequence
    assert m.on_line("RING", 12.0) == []
    assert m.on_timer(19.0) == []
    assert m.on_timer(20.0) == [CallAbandoned(rings=3)]
    assert m.state is LineState.IDLE and m.caller is None


def test_us_style_second_ring_completes_the_block():
    m = LineMachine()
    m.on_line("RING", 0.0)
    feed(m, ["NMBR=07700900123"], 2.5)
    [offer] = m.on_line("RING", 2.6)
    assert offer.caller.number == "07700900123"


def test_uk_style_block_before_first_ring_offers_at_once():
    m = LineMachine()
    assert feed(m, ["DATE = 0124", "TIME = 1534", "NMBR = 07700900123"], 0.0) == []
    [offer] = m.on_line("RING", 0.5)
    assert offer.caller.number == "07700900123"


def test_stale_uk_block_is_not_used_for_a_later_call():
    m = LineMachine(cid_wait_s=3.0)
    feed(m, ["NMBR = 07700900123"], 0.0)
    assert m.on_line("RING", 60.0) == []
    assert m.on_timer(63.0) == [CallOffered(None)]


def test_no_caller_id_offers_after_wait():
    m = LineMachine(cid_wait_s=5.0)
    m.on_line("RING", 0.0)
    assert m.on_timer(4.9) == []
    assert m.on_timer(5.0) == [CallOffered(None)]


def test_raw_line_offers_immediately_and_bad_checksum_is_flagged():
    m = LineMachine()
    m.on_line("RING", 0.0)
    out = m.on_line("801E01083130313532303338", 2.5)
    assert isinstance(out[0], Notice) and "not trusted" in out[0].text
    assert isinstance(out[1], CallOffered) and out[1].caller.to_caller_id().number is None


def voice_machine(**kw):
    m = LineMachine(**kw)
    m.on_line("RING", 0.0)
    m.transition(LineState.ANSWERING, "test")
    m.transition(LineState.VOICE, "test")
    return m


def ev(code, kind):
    return DleEvent(kind, code)


@pytest.mark.parametrize(("code", "kind", "reason"), [
    ("b", VoiceEvent.BUSY, "busy tone"),
    ("d", VoiceEvent.DIAL_TONE, "dial tone"),
    ("l", VoiceEvent.LOOP_BREAK, "loop current break"),
])
def test_far_end_tones_end_the_call_once(code, kind, reason):
    m = voice_machine()
    assert m.on_voice_event(ev(code, kind), 10.0) == [FarEndGone(reason)]
    assert m.on_voice_event(ev(code, kind), 10.1) == []


def test_silence_without_voice_gets_a_grace_period_then_ends():
    m = voice_machine(no_voice_grace_s=5.0)
    assert m.on_voice_event(ev("s", VoiceEvent.SILENCE), 10.0) == []
    assert m.next_deadline == 15.0
    assert m.on_timer(15.0) == [FarEndGone("silence")]


def test_quiet_then_speech_disarms_then_long_silence_ends():
    m = voice_machine(long_silence_s=30.0)
    m.on_voice_event(ev("q", VoiceEvent.QUIET), 10.0)
    m.on_audio_level(5000)  # the caller speaks again
    assert m.next_deadline is None
    m.on_voice_event(ev("q", VoiceEvent.QUIET), 50.0)
    m.on_audio_level(10)  # line noise does not count as speech
    assert m.on_timer(79.0) == []
    assert m.on_timer(80.0) == [FarEndGone("silence")]


def test_lucent_s_after_speech_is_plain_silence():
    m = voice_machine(silence_after_speech_is_s=True, no_voice_grace_s=5.0, long_silence_s=30.0)
    m.on_voice_event(ev("s", VoiceEvent.SILENCE), 10.0)
    assert m.next_deadline == 40.0


def test_dtmf_and_notices():
    m = voice_machine()
    assert m.on_voice_event(ev("5", VoiceEvent.DTMF), 1.0) == [DtmfReceived("5")]
    [notice] = m.on_voice_event(ev("P", VoiceEvent.HANDSET_OFF_HOOK), 1.0)
    assert isinstance(notice, Notice)
    assert m.on_voice_event(ev("T", VoiceEvent.TIMING_MARK), 1.0) == []


def test_transition_table_is_enforced():
    m = LineMachine()
    with pytest.raises(InvalidTransition):
        m.transition(LineState.VOICE, "no ring, no dial")
    m.transition(LineState.DIALING, "dial")
    m.transition(LineState.VOICE, "answered")
    with pytest.raises(InvalidTransition):
        m.transition(LineState.RINGING, "ring during a call")
    m.transition(LineState.HANGING_UP, "bye")
    m.transition(LineState.IDLE, "on hook")


def test_unexpected_text_is_a_notice_not_a_crash():
    m = LineMachine()
    [notice] = m.on_line("+FCERROR", 0.0)
    assert isinstance(notice, Notice)
    assert m.on_line("DRON=20", 0.0) == []
