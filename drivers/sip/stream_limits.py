"""Limits on inbound SIP streams (TCP and TLS). Pure code: the caller passes the clock.

``StreamAdmission`` caps the concurrent connections of one transport, overall and per
source address, so one host cannot take every slot; it sums up what it refused so the
shell can write one WARNING per interval instead of one per refused connection.

``GuardedFramer`` is the ``StreamFramer`` that also says whether part of a message is
waiting for the rest (keep-alive CRLFs do not count), and after a ``FramingError``
builds the 413 for a request whose header section is fine but whose declared body
is over the size limit.
"""
from __future__ import annotations

import re
import secrets
from collections import Counter

from drivers.sip.errors import SipParseError
from drivers.sip.message import SipRequest, StreamFramer, parse_message, response_bytes

_LISTED_SOURCES = 3  # sources named in one refusal report; the rest are counted
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*(\r?)$", re.IGNORECASE | re.MULTILINE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class StreamAdmission:
    """Who may open one more connection, and what was refused since the last report."""

    def __init__(self, max_total: int, max_per_source: int, report_interval_s: float) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._interval = report_interval_s
        self._open: Counter[str] = Counter()
        self._total = 0
        self._refused_per_source: Counter[str] = Counter()  # since the last report, by source
        self._refused_full: Counter[str] = Counter()  # since the last report: every slot was taken
        self._reported_at: float | None = None
        self.refused_total = 0

    def admit(self, source: str, now: float) -> bool:
        """True when a connection from ``source`` may open; it holds a slot until ``release``."""
        if self._open[source] >= self.max_per_source:
            self._refused_per_source[source] += 1
        elif self._total >= self.max_total:
            self._refused_full[source] += 1
        else:
            self._open[source] += 1
            self._total += 1
            return True
        self.refused_total += 1
        return False

    def release(self, source: str) -> None:
        self._total -= 1
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]

    def report_due_in(self, now: float) -> float:
        """Seconds until the refusals not yet reported may be (0: now)."""
        if self._reported_at is None:
            return 0.0
        return max(0.0, self._reported_at + self._interval - now)

    def take_report(self, now: float) -> str | None:
        """The text of a WARNING about the refusals since the last one (None: there were none)."""
        per_source = sum(self._refused_per_source.values())
        full = sum(self._refused_full.values())
        if not per_source and not full:
            return None
        since = "" if self._reported_at is None else f" in the last {max(1.0, now - self._reported_at):.0f} s"
        parts = []
        if per_source:
            named = self._refused_per_source.most_common(_LISTED_SOURCES)
            who = ", ".join(f"{n} from {ip}" for ip, n in named)
            others = len(self._refused_per_source) - len(named)
            if others:
                who += f" and {per_source - sum(n for _, n in named)} from {_plural(others, 'other source')}"
            parts.append(f"{who}, over the limit of {self.max_per_source} open connections per source address"
                         " (a phone needs one): check that host, and block it in the firewall if it is not yours")
        if full:
            parts.append(f"{full} from {_plural(len(self._refused_full), 'source')} because all {self.max_total}"
                         " connection slots were in use: new phones cannot connect until some close;"
                         " look for the hosts holding them (ss -tn) and block any that is not yours")
        self._refused_per_source.clear()
        self._refused_full.clear()
        self._reported_at = now
        return f"refused {_plural(per_source + full, 'connection')}{since}: {'; '.join(parts)}"


class GuardedFramer(StreamFramer):
    """``StreamFramer`` plus what the connection needs for its deadlines and its 413.

    It reads the base class's buffer (``_buf``) and limit (``_max``): both could move into
    ``StreamFramer`` itself, which lives in ``drivers.sip.message``.
    """

    @property
    def mid_message(self) -> bool:
        """Part of a message is buffered, waiting for the rest (a partial CRLF ping is not)."""
        return bool(self._buf.strip(b"\r\n"))

    def too_large_answer(self) -> bytes | None:
        """After ``FramingError``: the 413 for a request whose header section is complete and valid
        but whose Content-Length is over the limit; None for anything else (close without answer)."""
        pending = bytes(self._buf)
        end = _HEAD_END.search(pending)
        if end is None:
            return None
        head = pending[: end.start()]
        length = _CONTENT_LENGTH.search(head)
        if length is None or end.end() + int(length.group(1)) <= self._max:
            return None  # not a size problem (an unusable Content-Length, say)
        try:  # the header section alone, as if it had no body, so it can be parsed and answered
            request = parse_message(_CONTENT_LENGTH.sub(rb"Content-Length: 0\2", head) + b"\r\n\r\n", stream=True)
        except SipParseError:
            return None
        if not isinstance(request, SipRequest) or request.method == "ACK":
            return None  # responses are never answered, nor an ACK (§17.2.1)
        return response_bytes(request, 413, to_tag=secrets.token_hex(6))
