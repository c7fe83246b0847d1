"""Source guard: token-bucket rate limit, failure window, temporary bans logged once."""
from __future__ import annotations

import logging

import pytest

from drivers.sip import guard as guard_module
from drivers.sip.guard import GuardConfig, SourceGuard


def test_tenth_failure_bans_logs_once_and_ban_expires(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip.guard")
    g = SourceGuard(GuardConfig(ban_after=10, failure_window_s=60.0, ban_s=300.0))
    for i in range(9):
        assert g.admit("127.0.0.1", float(i))
        assert not g.failure("127.0.0.1", "wrong password for '201'", float(i))
    assert g.failure("127.0.0.1", "wrong password for '201'", 9.0)
    for t in (9.5, 100.0, 308.9):
        assert not g.admit("127.0.0.1", t)
        assert not g.failure("127.0.0.1", "again", t)  # failures while banned neither extend nor re-log
    bans = [r.getMessage() for r in caplog.records if "banned" in r.getMessage()]
    assert bans == ["SIP source 127.0.0.1 banned for 300 s after 10 failed attempts (last: wrong password for '201')"]
    assert caplog.records[-1].levelno == logging.WARNING
    assert g.admit("127.0.0.2", 10.0)  # other sources are not affected
    assert g.admit("127.0.0.1", 309.1)  # the ban is temporary
    stats = g.statistics(309.1)
    assert stats.bans_total == 1 and stats.banned_sources == 0 and stats.dropped_banned == 3


def test_failures_outside_the_window_do_not_add_up() -> None:
    g = SourceGuard(GuardConfig(ban_after=3, failure_window_s=10.0))
    for t in (0.0, 6.0, 12.0, 18.0, 24.0):  # never 3 within 10 s
        assert not g.failure("10.0.0.9", "unknown user", t)
    assert g.failure("10.0.0.9", "unknown user", 29.0) is False  # 24, 29
    assert g.failure("10.0.0.9", "unknown user", 30.0) is True  # 24, 29, 30


def test_rate_limit_burst_then_refill_and_one_warning_per_minute(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip.guard")
    g = SourceGuard(GuardConfig(rate_per_s=10.0, burst=20))
    admitted = sum(g.admit("198.51.100.7", 0.0) for _ in range(50))
    assert admitted == 20
    assert sum(g.admit("198.51.100.7", 1.0) for _ in range(50)) == 10  # 1 s refills 10 tokens
    # a steady flood: each refilled token admits one message, the rest are dropped
    flood = [g.admit("198.51.100.7", 1.0 + i * 0.01) for i in range(1, 3000)]  # 100/s for 30 s
    assert 290 <= sum(flood) <= 310
    assert len([r for r in caplog.records if "messages/s" in r.getMessage()]) == 1
    assert sum(g.admit("198.51.100.7", 62.0) for _ in range(25)) == 20  # refilled, then over again
    assert len([r for r in caplog.records if "messages/s" in r.getMessage()]) == 2  # again after a minute
    assert g.statistics(62.0).dropped_rate >= 70 + 2600


def test_trusted_networks_are_never_limited_or_banned() -> None:
    g = SourceGuard(GuardConfig(rate_per_s=1.0, burst=1, ban_after=1, trusted=("10.1.0.0/16",)))
    assert all(g.admit("10.1.2.3", 0.0) for _ in range(100))
    assert not g.failure("10.1.2.3", "x", 0.0)
    assert g.failure("10.2.0.1", "x", 0.0)
    assert not g.admit("10.2.0.1", 0.1)


def test_bad_config_is_refused_at_startup() -> None:
    with pytest.raises(ValueError):
        GuardConfig(trusted=("not-a-network",))
    with pytest.raises(ValueError):
        GuardConfig(ban_after=0)


def test_table_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(guard_module, "MAX_TRACKED_SOURCES", 100)
    g = SourceGuard()
    for i in range(1000):
        g.admit(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(g._sources) == 100
