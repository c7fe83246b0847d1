"""Keep registered UDP desk phones reachable and know when they are not ("qualify", as PBXs do).

While a UDP binding is live, an OPTIONS goes to the address its REGISTER came from every
``interval_s`` (25 s by default: the refresh keeps the phone's NAT mapping open, whose
UDP timeout is commonly 30 s), as a non-INVITE client transaction through the line's UDP
socket. Any final answer (200, 404, 405, a 5xx...) proves the phone is there: reachable,
with its round-trip time. No answer within ``QUALIFY_TIMEOUT_S`` makes it unreachable; the
transaction is then abandoned instead of retransmitting until Timer F (32 s). A change of
reachability is logged once, never each ping. The first OPTIONS goes one interval after the
registration (the 200 to its REGISTER has just gone through the phone's NAT), and at once
when an unreachable phone registers again or its binding was restored at start (from the
bindings file); until the first answer reachability is not known.

A TCP/TLS binding gets no OPTIONS: the phone keeps its connection (and NAT) open with
RFC 5626 CRLF pings, and the binding is reachable exactly while that connection is open.
Timers are loop handles, one per binding (no task), all cancelled by ``stop()``.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from drivers.sip.headers import Headers
from drivers.sip.message import SipResponse, serialize_request
from drivers.sip.registrar import Binding, LocationService
from drivers.sip.transport import Connection, SipTransports
from drivers.sip.uri import NameAddr, Uri
from drivers.sip.useragent import UserAgent, new_branch, new_tag

log = logging.getLogger(__name__)

QUALIFY_TIMEOUT_S = 5.0  # a phone answers OPTIONS in ms (LAN) to ~300 ms (WAN); Timer E resends at 0.5/1/2 s
DEFAULT_QUALIFY_S = 25.0  # under the usual 30 s UDP NAT mapping timeout


@dataclass(frozen=True, slots=True)
class Reachability:
    reachable: bool | None  # None: not known yet (first OPTIONS pending, or qualify is off)
    rtt_ms: float | None = None  # round trip of the last answered OPTIONS
    reason: str = ""  # why it is unreachable, for people: "no answer to OPTIONS for 5 s"


UNKNOWN = Reachability(None)


class _Probe:
    """What we know about one UDP binding, and its OPTIONS in flight."""

    __slots__ = ("aor", "branch", "call_id", "contact", "cseq", "deadline", "from_tag", "sent_at", "source", "state",
                 "timer")

    def __init__(self, aor: str, contact: str, source: tuple[str, int]) -> None:
        self.aor = aor
        self.contact = contact
        self.source = source
        self.call_id = f"{secrets.token_hex(10)}@branchline"
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = UNKNOWN
        self.timer: asyncio.TimerHandle | None = None  # the next OPTIONS
        self.branch: str | None = None  # of the OPTIONS waiting for its answer
        self.sent_at = 0.0
        self.deadline: asyncio.TimerHandle | None = None  # QUALIFY_TIMEOUT_S after sent_at

    def describe(self) -> str:
        return f"SIP extension {self.aor} (contact {self.contact} via {self.source[0]}:{self.source[1]})"


class Qualifier:
    def __init__(self, ua: UserAgent, location: LocationService, interval_s: float, transports: SipTransports,
                 local_ip: Callable[[Connection], str]) -> None:
        """``local_ip(conn)``: our address as the phone at the other end of ``conn`` sees it (for Via/From)."""
        self._ua = ua
        self._location = location
        self.interval_s = interval_s  # 0: no OPTIONS (UDP phones then show as not known)
        self._transports = transports
        self._local_ip = local_ip
        self._loop = asyncio.get_running_loop()
        self._probes: dict[tuple[str, str], _Probe] = {}  # by (extension, contact)

    # ---- what the line asks --------------------------------------------------------------
    def reachability(self, binding: Binding) -> Reachability:
        if binding.transport != "udp":
            if self._transports.stream_connection(binding.transport, binding.source) is not None:
                return Reachability(True)
            return Reachability(False, reason=f"its {binding.transport.upper()} connection is closed")
        probe = self._probes.get((binding.aor, binding.contact))
        return probe.state if probe is not None and probe.source == binding.source else UNKNOWN

    def reachable(self, aor: str) -> bool | None:
        """True when one of the extension's phones answers, False when every one of them is
        known to be unreachable, None when not registered or not known yet."""
        states = [self.reachability(b).reachable for b in self._location.bindings(aor, self._ua.now())]
        if any(states):
            return True
        if states and all(s is False for s in states):
            return False
        return None

    def watch(self, aor: str, *, at_once: bool = False) -> None:
        """The extension's bindings changed (a REGISTER): qualify new ones, forget removed ones.
        ``at_once``: the first OPTIONS goes now (bindings restored at start), not one interval later."""
        if self.interval_s <= 0:
            return
        live = {}
        for binding in self._location.bindings(aor, self._ua.now()):
            if binding.transport == "udp":
                live[(aor, binding.contact)] = binding
        for key in [k for k in self._probes if k[0] == aor and k not in live]:
            self._drop(key)
        for key, binding in live.items():
            probe = self._probes.get(key)
            if probe is None or probe.source != binding.source:  # new, or the phone's NAT moved it
                if probe is not None:
                    self._drop(key)
                probe = self._probes[key] = _Probe(aor, binding.contact, binding.source)
                # after a REGISTER its NAT mapping is fresh: one interval; a binding restored at start: now
                self._schedule(probe, self._ua.now() + (0 if at_once else self.interval_s))
            elif probe.state.reachable is False and probe.branch is None:
                self._schedule(probe, self._ua.now())  # it spoke to us again: check at once

    def stop(self) -> None:
        for key in list(self._probes):
            self._drop(key)

    # ---- internals --------------------------------------------------------------------------
    def _drop(self, key: tuple[str, str]) -> None:
        probe = self._probes.pop(key, None)
        if probe is None:
            return
        for handle in (probe.timer, probe.deadline):
            if handle is not None:
                handle.cancel()
        if probe.branch is not None:
            self._ua.abandon_request(probe.branch, "OPTIONS")
            probe.branch = None

    def _schedule(self, probe: _Probe, at: float) -> None:
        if probe.timer is not None:
            probe.timer.cancel()
        probe.timer = self._loop.call_at(at, self._ping, probe)

    def _ping(self, probe: _Probe) -> None:
        probe.timer = None
        key = (probe.aor, probe.contact)
        if self._probes.get(key) is not probe:
            return
        binding = next((b for b in self._location.bindings(probe.aor, self._ua.now()) if b.contact == probe.contact
                        and b.transport == "udp"), None)
        conn = self._transports.udp_connection(probe.source) if binding is not None else None
        if binding is None or conn is None:  # expired or unregistered (or the line is closing): no more OPTIONS
            self._drop(key)
            return
        try:
            data, probe.branch = self._options(probe, conn)
        except Exception:  # a bug here must not end qualifying for good
            log.exception("%s: cannot build OPTIONS", probe.describe())
            self._schedule(probe, self._ua.now() + self.interval_s)
            return
        probe.sent_at = now = self._ua.now()
        branch = probe.branch
        self._ua.send_request(data, branch, "OPTIONS", conn,
                              on_response=lambda response: self._answered(probe, branch, response))
        probe.deadline = self._loop.call_at(now + QUALIFY_TIMEOUT_S, self._silent, probe, branch)

    def _options(self, probe: _Probe, conn: Connection) -> tuple[bytes, str]:
        local_ip = self._local_ip(conn)
        host = f"[{local_ip}]" if ":" in local_ip else local_ip
        branch = new_branch()
        probe.cseq += 1
        headers = Headers([
            ("Via", f"SIP/2.0/UDP {host}:{self._transports.udp_port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{NameAddr(None, Uri('sip', 'branchline', host))};tag={probe.from_tag}"),
            ("To", f"<{probe.contact}>"),
            ("Call-ID", probe.call_id),
            ("CSeq", f"{probe.cseq} OPTIONS"),
            ("Accept", "application/sdp"),
            ("User-Agent", self._ua.server_name),
        ])
        return serialize_request("OPTIONS", probe.contact, headers), branch

    def _answered(self, probe: _Probe, branch: str, response: SipResponse | None) -> None:
        if probe.branch != branch or self._probes.get((probe.aor, probe.contact)) is not probe:
            return  # abandoned (timed out, or the binding went away)
        if response is None:  # Timer F: only if QUALIFY_TIMEOUT_S were above 32 s
            self._silent(probe, branch)
            return
        if probe.deadline is not None:
            probe.deadline.cancel()
            probe.deadline = None
        probe.branch = None
        now = self._ua.now()
        rtt_ms = (now - probe.sent_at) * 1000.0
        was = probe.state.reachable
        probe.state = Reachability(True, rtt_ms)
        if was is False:
            log.info("%s is reachable again, %.0f ms", probe.describe(), rtt_ms)
        elif was is None:
            log.debug("%s is reachable, %.0f ms (OPTIONS answered %d)", probe.describe(), rtt_ms, response.status)
        self._schedule(probe, max(now, probe.sent_at + self.interval_s))

    def _silent(self, probe: _Probe, branch: str) -> None:
        if probe.branch != branch or self._probes.get((probe.aor, probe.contact)) is not probe:
            return
        if probe.deadline is not None:
            probe.deadline.cancel()  # when Timer F came first
            probe.deadline = None
        probe.branch = None
        self._ua.abandon_request(branch, "OPTIONS")
        was = probe.state.reachable
        probe.state = Reachability(False, reason=f"no answer to OPTIONS for {QUALIFY_TIMEOUT_S:g} s")
        if was is not False:
            log.warning("%s is unreachable: %s", probe.describe(), probe.state.reason)
        now = self._ua.now()
        self._schedule(probe, max(now, probe.sent_at + self.interval_s))
