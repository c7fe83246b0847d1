"""Outgoing calls, sans-IO: exact modem bytes -> AtChannel (no command pending, so every
line is a URC) -> urc.parse -> CallMachine. No asyncio, no serial, no simulator."""
import pytest

from appliance.lines import DialFailure, HangupCause
from drivers.at.channel import AtChannel
from drivers.gsm import calls as cm
from drivers.gsm import urc
from drivers.gsm.profiles import GENERIC, HUAWEI, QUECTEL, SIMCOM


class Wire:
    """Feeds modem bytes through the real framer/channel into the machine, collecting effects."""

    def __init__(self, profile) -> None:
        self.profile = profile
        self.machine = cm.CallMachine(profile)
        self.effects: list[cm.Effect] = []
        self.ch = AtChannel(lambda data: None, self._urc, urc_prefixes=profile.urc_prefixes + profile.noise_prefixes,
                            error_finals=profile.error_finals, name="test")

    def _urc(self, u) -> None:
        self.effects += self.machine.handle(urc.parse(u, self.profile))

    def dial(self, number: str = "+447700900123") -> None:
        self.effects += self.machine.handle(cm.Dialled(number))

    def feed(self, *chunks: bytes) -> list[cm.Effect]:
        start = len(self.effects)
        for chunk in chunks:
            self.ch.feed(chunk)
        return self.effects[start:]

    def ended(self) -> cm.Ended:
        [end] = [e for e in self.effects if isinstance(e, cm.Ended)]
        return end


def test_huawei_case27_answered_then_far_end_hangs_up():
    w = Wire(HUAWEI)
    w.dial()
    assert w.feed(b"\r\n^ORIG:1,0\r\n") == [] and w.machine.index == 1
    assert w.feed(b"\r\n^CONF:1\r\n") == [cm.Progress(cm.CallState.ALERTING)]
    got = w.feed(b"\r\n^CONN:1,0\r\n")
    assert got == [cm.Connected(), cm.Progress(cm.CallState.ACTIVE), cm.EnableAudio()]  # -> AT^DDSETEX=2
    [end] = w.feed(b"\r\n^CEND:1,5,29,16\r\n")
    assert end == cm.Ended(HangupCause.FAR_END_HUNG_UP, "^CEND cause 16 (normal clearing)", 5, True, None)


@pytest.mark.parametrize("cause,failure", [(17, DialFailure.BUSY), (19, DialFailure.NO_ANSWER),
                                           (21, DialFailure.REJECTED), (1, DialFailure.UNREACHABLE),
                                           (38, DialFailure.UNREACHABLE)])
def test_huawei_cend_before_connect(cause, failure):
    w = Wire(HUAWEI)
    w.dial()
    w.feed(b"\r\n^ORIG:1,0\r\n", f"\r\n^CEND:1,0,104,{cause}\r\n".encode())
    end = w.ended()
    assert (end.failure, end.answered, end.cause) == (failure, False, HangupCause.REJECTED)
    assert w.machine.state is cm.CallState.IDLE


@pytest.mark.parametrize("profile", [GENERIC, QUECTEL])
@pytest.mark.parametrize("final,failure", [(b"BUSY", DialFailure.BUSY), (b"NO ANSWER", DialFailure.NO_ANSWER),
                                           (b"NO CARRIER", DialFailure.UNREACHABLE),
                                           (b"NO DIALTONE", DialFailure.UNREACHABLE)])
def test_3gpp_final_codes_after_atd_ok(profile, final, failure):
    w = Wire(profile)
    w.dial()
    w.feed(b"\r\n" + final + b"\r\n")  # one byte at a time would give the same: see the split test
    assert w.ended().failure is failure and not w.ended().answered


def test_generic_clcc_poll_alerting_active_then_no_carrier_split_across_reads():
    w = Wire(GENERIC)
    w.dial()
    assert w.feed(b'\r\n+CLCC: 1,0,2,0,0,"+447700900123",145\r\n') == []
    assert w.feed(b'\r\n+CLCC: 1,0,3,0,0,"+44770090', b'0123",145\r\n') == [cm.Progress(cm.CallState.ALERTING)]
    assert w.feed(b'\r\n+CLCC: 1,0,0,0,0,"+447700900123",145\r\n') == [cm.Connected(), cm.Progress(cm.CallState.ACTIVE)]
    end = [e for b in b"\r\nNO CARRIER\r\n" for e in w.feed(bytes([b]))]
    assert end == [cm.Ended(HangupCause.FAR_END_HUNG_UP, "NO CARRIER", None, True, None)]


def test_quectel_clcc_active_enables_pcm():
    w = Wire(QUECTEL)
    w.dial()
    assert cm.EnableAudio() in w.feed(b'\r\n+CLCC: 1,0,0,0,0,"+447700900123",145\r\n')  # QPCMV set with ATD


# ---- Quectel ^DSCI (AT^DSCI=1; modems.md A.7: 2 originating, 3 connected, 6 released) ----
def dsci(stat: int, index: int = 1, direction: int = 0) -> bytes:
    return f"\r\n^DSCI: {index},{direction},{stat},0,+447700900123,145\r\n".encode()


def test_quectel_dsci_answer_is_active_at_once_then_release_ends_it():
    w = Wire(QUECTEL)
    w.dial()
    assert w.feed(dsci(2)) == [] and w.machine.index == 1  # originating: still dialling
    got = w.feed(b"\r\n^DSCI: 1,0,3,0,+4477009", b"00123,145\r\n")  # connected, split across reads
    assert got == [cm.Connected(), cm.Progress(cm.CallState.ACTIVE), cm.EnableAudio()]  # no +CLCC poll needed
    [end] = w.feed(dsci(6) + b"\r\nNO CARRIER\r\n")
    assert end == cm.Ended(HangupCause.FAR_END_HUNG_UP, "^DSCI released", None, True, None)
    assert w.machine.state is cm.CallState.IDLE


@pytest.mark.parametrize("final,failure", [(b"BUSY", DialFailure.BUSY), (b"NO ANSWER", DialFailure.NO_ANSWER),
                                           (b"NO CARRIER", DialFailure.UNREACHABLE)])
def test_quectel_dsci_release_before_answer_waits_for_the_final_code(final, failure):
    w = Wire(QUECTEL)
    w.dial()
    w.feed(dsci(2))
    assert w.feed(dsci(6)) == [cm.ReleaseSeen()]  # the reason is in the final code right after it
    assert w.machine.state is cm.CallState.DIALING and w.machine.release_pending
    [end] = w.feed(b"\r\n" + final + b"\r\n")
    assert (end.failure, end.cause, end.answered) == (failure, HangupCause.REJECTED, False)
    assert w.machine.handle(cm.ReleaseTimeout()) == []  # the shell's timer fires late: nothing left to end


def test_quectel_dsci_release_with_no_final_code_ends_on_the_timeout():
    w = Wire(QUECTEL)
    w.dial()
    w.feed(dsci(2), dsci(6))
    [end] = w.machine.handle(cm.ReleaseTimeout())
    assert (end.failure, end.detail, end.answered) == (DialFailure.UNREACHABLE, "^DSCI released", False)
    assert w.feed(b"\r\nNO CARRIER\r\n") == []


def test_quectel_dsci_about_another_call_is_ignored():
    w = Wire(QUECTEL)
    w.dial()
    w.feed(dsci(2), dsci(3))
    assert w.feed(dsci(5, index=2, direction=1), dsci(6, index=2, direction=1)) == []  # a waiting call came and went
    assert w.machine.state is cm.CallState.ACTIVE
    [end] = w.feed(dsci(6))
    assert end.cause is HangupCause.FAR_END_HUNG_UP and end.answered


def test_quectel_dsci_incoming_caller_gives_up_is_a_missed_call_at_once():
    w = Wire(QUECTEL)
    w.feed(b'\r\nRING\r\n' + dsci(4, direction=1) + b'\r\n+CLIP: "+447700900123",145,"",0,"",0\r\n')
    assert w.machine.state is cm.CallState.RINGING and w.machine.index == 1
    [end] = [e for e in w.feed(dsci(6, direction=1)) if isinstance(e, cm.Ended)]
    assert (end.cause, end.answered, end.failure) == (HangupCause.CANCELLED, False, None)


def test_simcom_clcc_urcs_voice_call_begin_and_end():
    w = Wire(SIMCOM)
    w.dial()
    w.feed(b'\r\n+CLCC: 1,0,2,0,0,"+447700900123",145\r\n')
    assert w.feed(b'\r\n+CLCC: 1,0,3,0,0,"+447700900123",145\r\n') == [cm.Progress(cm.CallState.ALERTING)]
    got = w.feed(b"\r\nVOICE CALL: BEGIN\r\n", b'\r\n+CLCC: 1,0,0,0,0,"+447700900123",145\r\n')
    assert got == [cm.Connected(), cm.Progress(cm.CallState.ACTIVE), cm.EnableAudio()]  # -> AT+CPCMREG=1, once
    [end] = w.feed(b"\r\nVOICE CALL: END: 000012\r\n\r\nNO CARRIER\r\n", b'\r\n+CLCC: 1,0,6,0,0,"+447700900123",145\r\n')
    assert (end.cause, end.duration_s, end.answered, end.failure) == (HangupCause.FAR_END_HUNG_UP, 12, True, None)


def test_simcom_busy_final_before_clcc_released():
    w = Wire(SIMCOM)
    w.dial()
    w.feed(b'\r\n+CLCC: 1,0,2,0,0,"+447700900123",145\r\n', b"\r\nBUSY\r\n",
           b'\r\n+CLCC: 1,0,6,0,0,"+447700900123",145\r\n')
    assert w.ended().failure is DialFailure.BUSY


def test_clcc_released_alone_is_unreachable():
    w = Wire(SIMCOM)
    w.dial()
    w.feed(b'\r\n+CLCC: 1,0,6,0,0,"+447700900123",145\r\n')
    assert w.ended().failure is DialFailure.UNREACHABLE


@pytest.mark.parametrize("action,failure,cause", [
    (cm.LocalHangup(HangupCause.AGENT_HUNG_UP), DialFailure.CANCELLED, HangupCause.AGENT_HUNG_UP),
    (cm.LocalHangup(HangupCause.TIMEOUT), DialFailure.NO_ANSWER, HangupCause.TIMEOUT),
    (cm.Lost(), DialFailure.LINE_DOWN, HangupCause.LINE_LOST),
    (urc.CallEnd("+CME ERROR: 30"), DialFailure.UNREACHABLE, HangupCause.REJECTED),
    (urc.CallEnd("+CME ERROR: 3"), DialFailure.REJECTED, HangupCause.REJECTED),
    (urc.CallEnd("COMMAND NOT SUPPORT"), DialFailure.ERROR, HangupCause.REJECTED),
])
def test_host_side_endings_while_ringing(action, failure, cause):
    w = Wire(HUAWEI)
    w.dial()
    w.feed(b"\r\n^ORIG:1,0\r\n\r\n^CONF:1\r\n")
    [end] = w.machine.handle(action)
    assert (end.failure, end.cause, end.answered) == (failure, cause, False)


def test_hangup_after_answer_has_no_dial_failure():
    w = Wire(HUAWEI)
    w.dial()
    w.feed(b"\r\n^ORIG:1,0\r\n\r\n^CONF:1\r\n\r\n^CONN:1,0\r\n")
    [end] = w.machine.handle(cm.LocalHangup(HangupCause.AGENT_HUNG_UP))
    assert end.answered and end.failure is None
    assert w.feed(b"\r\n^CEND:1,3,104,16\r\n") == []  # the modem's own report of our hang-up is ignored


@pytest.mark.parametrize("profile,withhold,expected", [
    (GENERIC, True, "ATD+447700900123I;"),
    (GENERIC, False, "ATD+447700900123;"),
    (HUAWEI, True, "ATD+447700900123I;"),
    (QUECTEL, True, "AT+QPCMV=0;+QPCMV=1,0;D+447700900123I;"),
])
def test_dial_command_clir_modifier(profile, withhold, expected):
    assert cm.dial_command(profile, "+447700900123", withhold=withhold) == expected
