"""RFC 3261 §17 transaction state machines driven by an explicit fake clock."""
from __future__ import annotations

from drivers.sip.message import parse_message
from drivers.sip.transaction import (
    T1,
    T2,
    T4,
    TIMEOUT_64T1,
    AnswerRetransmitter,
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    SetTimer,
    State,
    Terminated,
    TimedOut,
    TimerName,
    cancel_target_key,
    server_key,
)


class Clock:
    """Runs a transaction's timers in deadline order, collecting what it sends."""

    def __init__(self, txn) -> None:
        self.txn = txn
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []
        self.events: list[object] = []

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.sent.append((self.now, a.data))
            elif not isinstance(a, SetTimer):
                self.events.append(a)

    def advance_to(self, t: float) -> None:
        while True:
            due = sorted((d, n) for n, d in self.txn.deadlines().items() if d <= t)
            if not due:
                break
            self.now, name = due[0]
            self.apply(self.txn.on_timer(name, self.now))
        self.now = t


def _req(method: str, branch: str = "z9hG4bKabc", to_tag: str = "", cseq_method: str | None = None):
    lines = [
        f"{method} sip:a@b SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}",
        "From: <sip:c@d>;tag=f1",
        f"To: <sip:a@b>{';tag=' + to_tag if to_tag else ''}",
        "Call-ID: cid1",
        f"CSeq: 5 {cseq_method or method}",
        "Content-Length: 0",
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def _resp(status: int, method: str = "INVITE", branch: str = "z9hG4bKabc"):
    lines = [
        f"SIP/2.0 {status} X",
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}",
        "From: <sip:c@d>;tag=f1",
        "To: <sip:a@b>;tag=t9",
        "Call-ID: cid1",
        f"CSeq: 5 {method}",
        "Content-Length: 0",
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_invite_server_absorbs_retransmission_with_last_response() -> None:
    txn = InviteServerTransaction(reliable=False)
    clock = Clock(txn)
    clock.apply(txn.send_response(100, b"100", 0.0))
    assert txn.receive_retransmission(0.1) == [Send(b"100")]
    clock.apply(txn.send_response(183, b"183", 0.2))
    assert txn.receive_retransmission(0.3) == [Send(b"183")]


def test_invite_server_timer_g_until_ack_then_i() -> None:
    txn = InviteServerTransaction(reliable=False)
    clock = Clock(txn)
    clock.apply(txn.send_response(486, b"486", 0.0))
    assert txn.state is State.COMPLETED
    clock.advance_to(10.0)
    times = [t for t, d in clock.sent]
    # sent at 0, then T1, +2T1, +4T1, then capped at T2 intervals
    assert times[:5] == [0.0, T1, T1 + 2 * T1, T1 + 2 * T1 + 4 * T1, 3.5 + T2]
    assert all(d == b"486" for _, d in clock.sent)
    assert txn.receive_retransmission(10.0) == [Send(b"486")]
    clock.apply(txn.receive_ack(10.0))
    assert txn.state is State.CONFIRMED
    sent_before = len(clock.sent)
    clock.advance_to(10.0 + T4 - 0.01)
    assert len(clock.sent) == sent_before and txn.state is State.CONFIRMED
    clock.advance_to(10.0 + T4)
    assert txn.state is State.TERMINATED and clock.events == [Terminated()]


def test_invite_server_timer_h_reports_missing_ack() -> None:
    txn = InviteServerTransaction(reliable=False)
    clock = Clock(txn)
    clock.apply(txn.send_response(480, b"480", 0.0))
    clock.advance_to(TIMEOUT_64T1 + 1)
    assert clock.events == [TimedOut(TimerName.H), Terminated()]
    assert txn.state is State.TERMINATED
    # nothing is sent after H: retransmission count is bounded
    assert max(t for t, _ in clock.sent) < TIMEOUT_64T1


def test_invite_server_reliable_has_no_timer_g() -> None:
    txn = InviteServerTransaction(reliable=True)
    clock = Clock(txn)
    clock.apply(txn.send_response(486, b"486", 0.0))
    clock.advance_to(5.0)
    assert len(clock.sent) == 1
    clock.apply(txn.receive_ack(5.0))
    assert txn.state is State.TERMINATED


def test_invite_server_2xx_goes_accepted_and_resends_on_retransmission() -> None:
    txn = InviteServerTransaction(reliable=False)
    clock = Clock(txn)
    clock.apply(txn.send_response(200, b"200", 0.0))
    assert txn.state is State.ACCEPTED
    assert txn.receive_retransmission(1.0) == [Send(b"200")]
    assert txn.receive_ack(1.0) == []  # the 2xx ACK belongs to the dialog
    clock.advance_to(TIMEOUT_64T1)
    assert txn.state is State.TERMINATED


def test_non_invite_server_caches_final_until_timer_j() -> None:
    txn = NonInviteServerTransaction(reliable=False)
    clock = Clock(txn)
    assert txn.receive_retransmission(0.0) == []  # Trying: absorbed silently
    clock.apply(txn.send_response(200, b"200-bye", 0.1))
    assert txn.receive_retransmission(1.0) == [Send(b"200-bye")]
    clock.advance_to(0.1 + TIMEOUT_64T1 - 0.01)
    assert txn.state is State.COMPLETED
    clock.advance_to(0.1 + TIMEOUT_64T1)
    assert txn.state is State.TERMINATED


def test_non_invite_client_timer_e_doubles_to_t2_then_f_times_out() -> None:
    txn = NonInviteClientTransaction(b"BYE", reliable=False)
    clock = Clock(txn)
    clock.apply(txn.start(0.0))
    clock.advance_to(TIMEOUT_64T1 + 1)
    times = [t for t, _ in clock.sent]
    assert times[:5] == [0.0, 0.5, 1.5, 3.5, 7.5]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) == T2
    assert clock.events == [TimedOut(TimerName.F), Terminated()]


def test_non_invite_client_final_response_then_k() -> None:
    txn = NonInviteClientTransaction(b"BYE", reliable=False)
    clock = Clock(txn)
    clock.apply(txn.start(0.0))
    clock.advance_to(0.6)
    clock.apply(txn.receive_response(_resp(200, "BYE"), 0.7))
    assert isinstance(clock.events[0], Deliver) and clock.events[0].response.status == 200
    assert txn.receive_response(_resp(200, "BYE"), 0.8) == []  # retransmission absorbed
    sent = len(clock.sent)
    clock.advance_to(0.7 + T4)
    assert len(clock.sent) == sent
    assert txn.state is State.TERMINATED


def test_invite_client_acks_non_2xx_and_repeats_ack_on_retransmission() -> None:
    invite = _req("INVITE")
    txn = InviteClientTransaction(invite, b"INVITE", reliable=False)
    clock = Clock(txn)
    clock.apply(txn.start(0.0))
    clock.advance_to(1.6)
    assert [t for t, _ in clock.sent] == [0.0, 0.5, 1.5]  # Timer A doubling
    clock.apply(txn.receive_response(_resp(180), 1.7))
    clock.advance_to(5.0)
    assert len(clock.sent) == 3  # no retransmission once proceeding
    clock.apply(txn.receive_response(_resp(486), 5.0))
    ack = parse_message(clock.sent[-1][1])
    assert ack.method == "ACK" and str(ack.cseq) == "5 ACK"
    assert ack.branch == invite.branch and ack.to_addr.tag == "t9"
    assert txn.receive_response(_resp(486), 6.0) == [Send(clock.sent[-1][1])]
    clock.advance_to(5.0 + 32.0)
    assert txn.state is State.TERMINATED


def test_invite_client_timer_b() -> None:
    txn = InviteClientTransaction(_req("INVITE"), b"INVITE", reliable=False)
    clock = Clock(txn)
    clock.apply(txn.start(0.0))
    clock.advance_to(40.0)
    assert TimedOut(TimerName.B) in clock.events


def test_answer_retransmitter_until_ack_and_give_up() -> None:
    r = AnswerRetransmitter(b"200", reliable=False)
    clock = Clock(r)
    clock.apply(r.start(0.0))
    clock.advance_to(8.0)
    assert [t for t, _ in clock.sent] == [0.5, 1.5, 3.5, 7.5]
    clock.apply(r.receive_ack(8.0))
    clock.advance_to(60.0)
    assert len(clock.sent) == 4 and clock.events == [Terminated()]

    r2 = AnswerRetransmitter(b"200", reliable=False)
    clock2 = Clock(r2)
    clock2.apply(r2.start(0.0))
    clock2.advance_to(60.0)
    assert clock2.events == [TimedOut(TimerName.WAIT_ACK), Terminated()]
    assert max(t for t, _ in clock2.sent) < TIMEOUT_64T1


def test_stale_timer_callbacks_are_ignored() -> None:
    txn = InviteServerTransaction(reliable=False)
    txn.send_response(486, b"486", 0.0)
    assert txn.on_timer(TimerName.G, 0.1) == []  # early
    assert txn.on_timer(TimerName.J, 99.0) == []  # never armed


def test_matching_keys() -> None:
    invite = _req("INVITE")
    ack = _req("ACK", to_tag="t9")
    cancel = _req("CANCEL")
    bye = _req("BYE", branch="z9hG4bKother")
    assert server_key(ack) == server_key(invite)
    assert server_key(cancel) != server_key(invite)
    assert cancel_target_key(cancel) == server_key(invite)
    assert server_key(bye) != server_key(invite)
    old = _req("INVITE", branch="1234")  # RFC 2543 peer
    assert server_key(_req("ACK", branch="1234")) == server_key(old)
