"""RFC 3261 §17 transactions (with RFC 6026 fixes) as pure state machines.

No asyncio here. Every method takes ``now`` (seconds, monotonic) and returns a list
of actions for the shell to carry out: ``Send`` bytes over the transaction's
transport, arm a timer (``SetTimer``: call ``on_timer(name, now)`` at ``deadline``),
hand a response to the TU (``Deliver``), or report a failure (``TimedOut``).
``Terminated`` tells the shell to forget the transaction. A timer callback that
arrives for a timer no longer armed (or early) is ignored, so the shell never has
to cancel anything for correctness.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drivers.sip.errors import TransactionError
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, SipResponse, serialize_request

T1 = 0.5  # §17.1.1.1: RTT estimate, 500 ms default
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message remains in the network
TIMEOUT_64T1 = 64 * T1  # 32 s: Timers B, F, H, J, L, M and the UAS 2xx give-up
TIMER_D_S = 32.0  # §17.1.1.2: at least 32 s for unreliable transports
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7: branch prefix of RFC 3261 clients


class TimerName(StrEnum):
    A = "A"  # INVITE client retransmit
    B = "B"  # INVITE client timeout
    D = "D"  # INVITE client wait for response retransmissions
    E = "E"  # non-INVITE client retransmit
    F = "F"  # non-INVITE client timeout
    G = "G"  # INVITE server final-response retransmit
    H = "H"  # INVITE server wait for ACK
    I = "I"  # INVITE server absorb ACK retransmissions  # noqa: E741
    J = "J"  # non-INVITE server absorb request retransmissions
    K = "K"  # non-INVITE client absorb response retransmissions
    L = "L"  # RFC 6026 INVITE server Accepted state
    M = "M"  # RFC 6026 INVITE client Accepted state
    RETRANSMIT_2XX = "2xx"  # UAS 2xx retransmission (§13.3.1.4)
    WAIT_ACK = "wait-ack"  # UAS give-up on the ACK (§13.3.1.4)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: TimerName
    deadline: float


@dataclass(frozen=True, slots=True)
class Deliver:
    response: SipResponse


@dataclass(frozen=True, slots=True)
class TimedOut:
    timer: TimerName  # B/F: no response (TU treats as 408); H / WAIT_ACK: no ACK


@dataclass(frozen=True, slots=True)
class Terminated:
    pass


Action = Send | SetTimer | Deliver | TimedOut | Terminated


class State(StrEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


def server_key(request: SipRequest) -> tuple[str, ...]:
    """§17.2.3: branch + sent-by + method, ACK matching the INVITE it acknowledges."""
    method = "INVITE" if request.method == "ACK" else request.method
    via = request.via
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, via.sent_by, method)
    # RFC 2543 peers: fall back to the dialog-ish identifiers (§17.2.3, simplified)
    return ("2543", request.call_id, request.from_addr.tag or "", str(request.cseq.number), via.sent_by, method)


def cancel_target_key(cancel: SipRequest) -> tuple[str, ...]:
    """The key of the INVITE server transaction a CANCEL refers to (§9.2)."""
    key = server_key(cancel)
    return key[:-1] + ("INVITE",)


def client_key(branch: str, method: str) -> tuple[str, str]:
    """§17.1.3: branch + CSeq method (ACK never has its own client transaction)."""
    return (branch, method)


class _Base:
    _ALLOWED: dict[State, frozenset[State]] = {}

    def __init__(self, state: State, reliable: bool) -> None:
        self.state = state
        self.reliable = reliable
        self._timers: dict[TimerName, float] = {}

    def _go(self, new: State) -> None:
        if new not in self._ALLOWED.get(self.state, frozenset()):
            raise TransactionError(f"{type(self).__name__}: {self.state} -> {new} not allowed")
        self.state = new
        if new is State.TERMINATED:
            self._timers.clear()

    def _arm(self, name: TimerName, deadline: float) -> SetTimer:
        self._timers[name] = deadline
        return SetTimer(name, deadline)

    def _disarm(self, *names: TimerName) -> None:
        for name in names:
            self._timers.pop(name, None)

    def _due(self, name: TimerName, now: float) -> bool:
        deadline = self._timers.get(name)
        if deadline is None or now + 1e-6 < deadline:
            return False
        del self._timers[name]
        return True

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def deadlines(self) -> dict[TimerName, float]:
        return dict(self._timers)


class InviteServerTransaction(_Base):
    """§17.2.1 with RFC 6026's Accepted state."""

    _ALLOWED = {
        State.PROCEEDING: frozenset({State.COMPLETED, State.ACCEPTED, State.TERMINATED}),
        State.COMPLETED: frozenset({State.CONFIRMED, State.TERMINATED}),
        State.CONFIRMED: frozenset({State.TERMINATED}),
        State.ACCEPTED: frozenset({State.TERMINATED}),
    }

    def __init__(self, reliable: bool) -> None:
        super().__init__(State.PROCEEDING, reliable)
        self.last_response: bytes | None = None
        self.final_status: int | None = None
        self._g_interval = T1

    def receive_retransmission(self, now: float) -> list[Action]:
        """The same INVITE again: re-send the last response (absorbed, never a new call)."""
        if self.state in (State.PROCEEDING, State.COMPLETED, State.ACCEPTED) and self.last_response:
            return [Send(self.last_response)]
        return []

    def receive_ack(self, now: float) -> list[Action]:
        if self.state is not State.COMPLETED:
            return []  # ACK for a 2xx is the dialog's business, not ours
        self._go(State.CONFIRMED)
        self._disarm(TimerName.G, TimerName.H)
        if self.reliable:
            self._go(State.TERMINATED)
            return [Terminated()]
        return [self._arm(TimerName.I, now + T4)]

    def send_response(self, status: int, data: bytes, now: float) -> list[Action]:
        if self.state is not State.PROCEEDING:
            raise TransactionError(f"cannot send {status} in state {self.state}")
        self.last_response = data
        if status < 200:
            return [Send(data)]
        self.final_status = status
        if status < 300:
            self._go(State.ACCEPTED)
            return [Send(data), self._arm(TimerName.L, now + TIMEOUT_64T1)]
        self._go(State.COMPLETED)
        actions: list[Action] = [Send(data), self._arm(TimerName.H, now + TIMEOUT_64T1)]
        if not self.reliable:
            self._g_interval = T1
            actions.append(self._arm(TimerName.G, now + T1))
        return actions

    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        if not self._due(name, now):
            return []
        if name is TimerName.G and self.state is State.COMPLETED and self.last_response:
            self._g_interval = min(2 * self._g_interval, T2)
            return [Send(self.last_response), self._arm(TimerName.G, now + self._g_interval)]
        if name is TimerName.H and self.state is State.COMPLETED:
            self._go(State.TERMINATED)
            return [TimedOut(TimerName.H), Terminated()]
        if name in (TimerName.I, TimerName.L):
            self._go(State.TERMINATED)
            return [Terminated()]
        return []


class NonInviteServerTransaction(_Base):
    """§17.2.2."""

    _ALLOWED = {
        State.TRYING: frozenset({State.PROCEEDING, State.COMPLETED, State.TERMINATED}),
        State.PROCEEDING: frozenset({State.COMPLETED, State.TERMINATED}),
        State.COMPLETED: frozenset({State.TERMINATED}),
    }

    def __init__(self, reliable: bool) -> None:
        super().__init__(State.TRYING, reliable)
        self.last_response: bytes | None = None

    def receive_retransmission(self, now: float) -> list[Action]:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response:
            return [Send(self.last_response)]
        return []

    def send_response(self, status: int, data: bytes, now: float) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise TransactionError(f"cannot send {status} in state {self.state}")
        self.last_response = data
        if status < 200:
            if self.state is State.TRYING:
                self._go(State.PROCEEDING)
            return [Send(data)]
        self._go(State.COMPLETED)
        if self.reliable:
            self._go(State.TERMINATED)
            return [Send(data), Terminated()]
        return [Send(data), self._arm(TimerName.J, now + TIMEOUT_64T1)]

    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        if self._due(name, now) and name is TimerName.J:
            self._go(State.TERMINATED)
            return [Terminated()]
        return []


class NonInviteClientTransaction(_Base):
    """§17.1.2: retransmit with Timer E, give up with Timer F (reported as TimedOut)."""

    _ALLOWED = {
        State.TRYING: frozenset({State.PROCEEDING, State.COMPLETED, State.TERMINATED}),
        State.PROCEEDING: frozenset({State.COMPLETED, State.TERMINATED}),
        State.COMPLETED: frozenset({State.TERMINATED}),
    }

    def __init__(self, request: bytes, reliable: bool) -> None:
        super().__init__(State.TRYING, reliable)
        self.request = request
        self._e_interval = T1
        self.final_status: int | None = None

    def start(self, now: float) -> list[Action]:
        actions: list[Action] = [Send(self.request), self._arm(TimerName.F, now + TIMEOUT_64T1)]
        if not self.reliable:
            actions.append(self._arm(TimerName.E, now + T1))
        return actions

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        if self.state in (State.COMPLETED, State.TERMINATED):
            return []  # retransmitted final response: absorbed
        if response.status < 200:
            if self.state is State.TRYING:
                self._go(State.PROCEEDING)
            return [Deliver(response)]
        self.final_status = response.status
        self._go(State.COMPLETED)
        self._disarm(TimerName.E, TimerName.F)
        if self.reliable:
            self._go(State.TERMINATED)
            return [Deliver(response), Terminated()]
        return [Deliver(response), self._arm(TimerName.K, now + T4)]

    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        if not self._due(name, now):
            return []
        if name is TimerName.E and self.state in (State.TRYING, State.PROCEEDING):
            self._e_interval = min(2 * self._e_interval, T2) if self.state is State.TRYING else T2
            return [Send(self.request), self._arm(TimerName.E, now + self._e_interval)]
        if name is TimerName.F and self.state in (State.TRYING, State.PROCEEDING):
            self._go(State.TERMINATED)
            return [TimedOut(TimerName.F), Terminated()]
        if name is TimerName.K and self.state is State.COMPLETED:
            self._go(State.TERMINATED)
            return [Terminated()]
        return []


class InviteClientTransaction(_Base):
    """§17.1.1 with RFC 6026: Timer A/B, ACK for non-2xx, Timer D; 2xx -> Accepted (Timer M)."""

    _ALLOWED = {
        State.CALLING: frozenset({State.PROCEEDING, State.COMPLETED, State.ACCEPTED, State.TERMINATED}),
        State.PROCEEDING: frozenset({State.COMPLETED, State.ACCEPTED, State.TERMINATED}),
        State.COMPLETED: frozenset({State.TERMINATED}),
        State.ACCEPTED: frozenset({State.TERMINATED}),
    }

    def __init__(self, request: SipRequest, data: bytes, reliable: bool) -> None:
        super().__init__(State.CALLING, reliable)
        self.request = request
        self.data = data
        self._a_interval = T1
        self.ack: bytes | None = None

    def start(self, now: float) -> list[Action]:
        actions: list[Action] = [Send(self.data), self._arm(TimerName.B, now + TIMEOUT_64T1)]
        if not self.reliable:
            actions.append(self._arm(TimerName.A, now + T1))
        return actions

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        status = response.status
        if self.state is State.COMPLETED:
            return [Send(self.ack)] if status >= 300 and self.ack else []
        if self.state is State.ACCEPTED:
            return [Deliver(response)] if 200 <= status < 300 else []
        if self.state is State.TERMINATED:
            return []
        if status < 200:
            if self.state is State.CALLING:
                self._go(State.PROCEEDING)
                self._disarm(TimerName.A)
            return [Deliver(response)]
        self._disarm(TimerName.A, TimerName.B)
        if status < 300:
            self._go(State.ACCEPTED)
            return [Deliver(response), self._arm(TimerName.M, now + TIMEOUT_64T1)]
        self.ack = build_non2xx_ack(self.request, response)
        self._go(State.COMPLETED)
        actions: list[Action] = [Send(self.ack), Deliver(response)]
        if self.reliable:
            self._go(State.TERMINATED)
            actions.append(Terminated())
        else:
            actions.append(self._arm(TimerName.D, now + TIMER_D_S))
        return actions

    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        if not self._due(name, now):
            return []
        if name is TimerName.A and self.state is State.CALLING:
            self._a_interval *= 2
            return [Send(self.data), self._arm(TimerName.A, now + self._a_interval)]
        if name is TimerName.B and self.state in (State.CALLING, State.PROCEEDING):
            self._go(State.TERMINATED)
            return [TimedOut(TimerName.B), Terminated()]
        if name in (TimerName.D, TimerName.M):
            self._go(State.TERMINATED)
            return [Terminated()]
        return []


def build_non2xx_ack(invite: SipRequest, response: SipResponse) -> bytes:
    """§17.1.1.3: same Request-URI, Call-ID, From, top Via and CSeq number; To from the response."""
    items = [("Via", invite.headers.get_all("Via")[0]), ("From", invite.headers.get("From") or ""),
             ("To", response.headers.get("To") or ""), ("Call-ID", invite.call_id),
             ("CSeq", f"{invite.cseq.number} ACK"), ("Max-Forwards", "70")]
    items += [("Route", r) for r in invite.headers.get_all("Route")]
    return serialize_request("ACK", str(invite.uri), Headers(items))


class AnswerRetransmitter(_Base):
    """§13.3.1.4: the UAS re-sends its 2xx (T1 doubling, capped at T2) until the ACK.

    Gives up after 64*T1 with ``TimedOut(WAIT_ACK)``: the TU then sends BYE.
    """

    _ALLOWED = {State.ACCEPTED: frozenset({State.CONFIRMED, State.TERMINATED})}

    def __init__(self, data: bytes, reliable: bool) -> None:
        super().__init__(State.ACCEPTED, reliable)
        self.data = data
        self._interval = T1

    def start(self, now: float) -> list[Action]:
        actions: list[Action] = [self._arm(TimerName.WAIT_ACK, now + TIMEOUT_64T1)]
        if not self.reliable:
            actions.append(self._arm(TimerName.RETRANSMIT_2XX, now + T1))
        return actions

    def receive_ack(self, now: float) -> list[Action]:
        if self.state is not State.ACCEPTED:
            return []
        self._go(State.CONFIRMED)
        self._timers.clear()
        return [Terminated()]

    def receive_retransmission(self, now: float) -> list[Action]:
        return [Send(self.data)] if self.state is State.ACCEPTED else []

    def on_timer(self, name: TimerName, now: float) -> list[Action]:
        if not self._due(name, now) or self.state is not State.ACCEPTED:
            return []
        if name is TimerName.RETRANSMIT_2XX:
            self._interval = min(2 * self._interval, T2)
            return [Send(self.data), self._arm(TimerName.RETRANSMIT_2XX, now + self._interval)]
        if name is TimerName.WAIT_ACK:
            self._go(State.TERMINATED)
            return [TimedOut(TimerName.WAIT_ACK), Terminated()]
        return []
