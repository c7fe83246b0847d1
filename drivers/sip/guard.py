"""Hostile-input guard: per-source rate limiting and temporary bans for scanners. Pure code.

Every message from a source IP first asks ``admit(ip, now)``: a banned source, or one
over its token-bucket rate, is dropped without an answer (a real UA retransmits over
UDP; a scanner learns nothing). The SIP layers report ``failure(ip, reason, now)`` for
a failed authentication, a REGISTER sweep that leaves its challenges unanswered (the
same count whether the user exists or not, see ``drivers.sip.registrar``), an INVITE
for a number we do not serve, or a malformed message; the ``ban_after`` th failure
within ``failure_window_s`` bans the source for ``ban_s``, logged once at WARNING.
Trusted networks (a carrier trunk) are never limited.

The tables are bounded: the least recently seen source is forgotten first, so a
spoofed-address flood costs memory of at most ``MAX_TRACKED_SOURCES`` entries.
"""
from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_TRACKED_SOURCES = 4096  # sources remembered (rate buckets, failure history, bans)
RATE_LOG_INTERVAL_S = 60.0  # a source flooding for minutes gets one WARNING per minute, not one per drop


@dataclass(frozen=True, slots=True)
class GuardConfig:
    rate_per_s: float = 100.0  # sustained messages/s per source; a busy trunk sends ~3 per call setup
    burst: int = 200  # bucket size: a phone re-registering after an outage, a call burst
    ban_after: int = 10  # failures within the window that ban a source
    failure_window_s: float = 60.0
    ban_s: float = 300.0
    trusted: tuple[str, ...] = ()  # networks ("10.0.0.0/8", "192.0.2.7") never limited or banned

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1 or self.ban_after < 1 or self.ban_s < 0:
            raise ValueError("guard: rate_per_s, burst and ban_after must be positive, ban_s >= 0")
        for net in self.trusted:
            ipaddress.ip_network(net, strict=False)  # ValueError on a typo, at startup


@dataclass(frozen=True, slots=True)
class GuardStatistics:
    banned_sources: int  # currently banned
    bans_total: int
    dropped_banned: int  # messages ignored because their source was banned
    dropped_rate: int  # messages ignored because their source was over its rate
    failures: int


class _Source:
    __slots__ = ("tokens", "refilled", "failures", "banned_until", "rate_logged_at")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.refilled = now
        self.failures: deque[float] = deque()
        self.banned_until = 0.0
        self.rate_logged_at: float | None = None


class SourceGuard:
    def __init__(self, config: GuardConfig = GuardConfig()) -> None:
        self.config = config
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted)
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._bans_total = 0
        self._dropped_banned = 0
        self._dropped_rate = 0
        self._failures = 0

    def is_trusted(self, ip: str) -> bool:
        if not self._trusted:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._trusted)

    def _entry(self, ip: str, now: float) -> _Source:
        entry = self._sources.get(ip)
        if entry is None:
            entry = _Source(float(self.config.burst), now)
            self._sources[ip] = entry
            if len(self._sources) > MAX_TRACKED_SOURCES:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(ip)
        return entry

    def is_banned(self, ip: str, now: float) -> bool:
        entry = self._sources.get(ip)
        return entry is not None and now < entry.banned_until

    def admit(self, ip: str, now: float) -> bool:
        """True if a message from ``ip`` may be processed (costs one token)."""
        if self.is_trusted(ip):
            return True
        entry = self._entry(ip, now)
        if now < entry.banned_until:
            self._dropped_banned += 1
            return False
        cfg = self.config
        entry.tokens = min(float(cfg.burst), entry.tokens + (now - entry.refilled) * cfg.rate_per_s)
        entry.refilled = now
        if entry.tokens < 1.0:
            self._dropped_rate += 1
            if entry.rate_logged_at is None or now - entry.rate_logged_at >= RATE_LOG_INTERVAL_S:
                entry.rate_logged_at = now
                log.warning("SIP source %s sends more than %.0f messages/s; dropping the excess", ip,
                            cfg.rate_per_s)
            return False
        entry.tokens -= 1.0
        return True

    def failure(self, ip: str, reason: str, now: float) -> bool:
        """Record a failed attempt; True when this one banned the source."""
        if self.is_trusted(ip):
            return False
        self._failures += 1
        cfg = self.config
        entry = self._entry(ip, now)
        if now < entry.banned_until:
            return False
        entry.failures.append(now)
        while entry.failures and entry.failures[0] <= now - cfg.failure_window_s:
            entry.failures.popleft()
        if len(entry.failures) < cfg.ban_after:
            return False
        entry.failures.clear()
        entry.banned_until = now + cfg.ban_s
        self._bans_total += 1
        log.warning("SIP source %s banned for %.0f s after %d failed attempts (last: %s)", ip, cfg.ban_s,
                    cfg.ban_after, reason)
        return True

    def statistics(self, now: float) -> GuardStatistics:
        banned = sum(1 for e in self._sources.values() if now < e.banned_until)
        return GuardStatistics(banned, self._bans_total, self._dropped_banned, self._dropped_rate,
                               self._failures)
