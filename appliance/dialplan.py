"""The outbound dial plan: which line carries a number an agent dials.

``[[dial_plan]]`` rules are tried in order; the first whose ``pattern`` matches the
dialled number (spaces, dots, dashes and brackets removed) wins. Its ``via`` names the
lines to try, in order: ``"trunk"`` (the SIP trunk), ``"gsm"`` / ``"analog"`` (any line of
that kind) or one line id (``"gsm:356938035643809"``, ``"analog:0"``). A line that is down
or already busy is skipped for the next one; any other failure (busy, no answer) is the
answer. ``strip`` digits are removed from the front and ``prepend`` added before dialling
(e.g. an outside-line prefix "9").

Without a dial plan the box dials any number on the trunk, then a GSM line, then an
analog line.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from appliance.lines import CallerId, DialFailed, DialFailure, Dialler, OutboundCall

log = logging.getLogger(__name__)

DIALLABLE = re.compile(r"\+?[0-9*#]{1,32}")
_SEPARATORS = re.compile(r"[\s.\-()/]")
_TRUNK_PREFIX = re.compile(r"(?<=^\+\d)\s*\(0\)|(?<=^\+\d\d)\s*\(0\)|(?<=^\+\d\d\d)\s*\(0\)")
LINE_KINDS = ("trunk", "gsm", "analog")
SKIP_TO_NEXT_LINE = frozenset({DialFailure.LINE_DOWN, DialFailure.LINE_BUSY})


class DialPlanError(ValueError):
    """A [[dial_plan]] rule cannot be used; the message names the rule and the problem."""


@dataclass(frozen=True, slots=True)
class DialRule:
    pattern: str  # regular expression, matched against the whole number
    via: tuple[str, ...]  # line kinds or line ids, tried in order
    strip: int = 0
    prepend: str = ""
    name: str = ""

    def matches(self, number: str) -> bool:
        return re.fullmatch(self.pattern, number) is not None

    def rewrite(self, number: str) -> str:
        return self.prepend + number[self.strip:]


DEFAULT_RULES = (DialRule(pattern=r".+", via=LINE_KINDS, name="any number"),)


def parse_rules(items: list[dict[str, Any]]) -> tuple[DialRule, ...]:
    """Validate ``[[dial_plan]]`` tables into rules (empty list: the default plan)."""
    rules = []
    for no, item in enumerate(items, 1):
        label = f"[[dial_plan]] rule {no}" + (f" ({item.get('name')})" if item.get("name") else "")
        unknown = set(item) - {"pattern", "via", "strip", "prepend", "name"}
        if unknown:
            raise DialPlanError(f"{label} has unknown key(s): {', '.join(sorted(unknown))}")
        pattern = item.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise DialPlanError(f"{label} needs a pattern (a regular expression such as \"^0[1-9]\\\\d+$\")")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DialPlanError(f"{label}: pattern {pattern!r} is not a valid regular expression ({exc})") from None
        via = item.get("via", list(LINE_KINDS))
        if isinstance(via, str):
            via = [via]
        if not isinstance(via, list) or not via or not all(isinstance(v, str) and v for v in via):
            raise DialPlanError(f"{label}: via must be a line kind (trunk, gsm, analog), a line id, or a list of them")
        for v in via:
            if v not in LINE_KINDS and ":" not in v:
                raise DialPlanError(f"{label}: via {v!r} is neither trunk, gsm, analog nor a line id like gsm:<imei>")
        strip = item.get("strip", 0)
        prepend = item.get("prepend", "")
        if not isinstance(strip, int) or isinstance(strip, bool) or strip < 0:
            raise DialPlanError(f"{label}: strip must be a whole number of digits >= 0")
        if not isinstance(prepend, str) or (prepend and not re.fullmatch(r"\+?[0-9*#]*", prepend)):
            raise DialPlanError(f"{label}: prepend must be digits (optionally starting with +)")
        rules.append(DialRule(pattern, tuple(via), strip, prepend, str(item.get("name", ""))))
    return tuple(rules) or DEFAULT_RULES


def normalise(number: str) -> str:
    """The number without separators; DialFailed(REJECTED) when it is not diallable.

    An international number written with the trunk prefix in brackets ("+44 (0)20 7946 0018",
    as British, German and Swiss numbers often are) loses it: "+442079460018"."""
    cleaned = _SEPARATORS.sub("", _TRUNK_PREFIX.sub("", number or "", count=1))
    if not DIALLABLE.fullmatch(cleaned):
        raise DialFailed(DialFailure.REJECTED, f"{number!r} is not a number that can be dialled")
    if "#" in cleaned or cleaned.startswith("*"):
        # on a GSM modem ATD*21*...# sets call forwarding, *#06# reads the IMEI: a service code
        # changes the SIM's settings instead of calling anyone (keys during a call use the keypad)
        raise DialFailed(DialFailure.REJECTED, f"{number!r} is a service code, not a number: it cannot be dialled "
                                               "from the box (use the keypad during a call for menu keys)")
    return cleaned


class DialPlan:
    """Chooses the line for a number and dials it."""

    def __init__(self, rules: tuple[DialRule, ...], lines: Callable[[], Mapping[str, Dialler]]) -> None:
        self._rules = rules
        self._lines = lines  # line id ("trunk", "gsm:...", "analog:0") -> dialler, read at each dial

    def route(self, number: str) -> tuple[DialRule, list[str]]:
        """The rule for ``number`` and the line ids it would try, in order (for the console/TUI too)."""
        rule = next((r for r in self._rules if r.matches(number)), None)
        if rule is None:
            raise DialFailed(DialFailure.REJECTED, f"no dial plan rule matches {number}")
        available = self._lines()
        order: list[str] = []
        for via in rule.via:
            if via in LINE_KINDS and via != "trunk":
                order += sorted(lid for lid in available if lid.startswith(via + ":"))
            else:
                order.append(via)
        return rule, [lid for i, lid in enumerate(order) if lid not in order[:i]]

    async def dial(self, number: str, caller: CallerId | None = None) -> OutboundCall:
        """Dial ``number`` on the first usable line of its rule; DialFailed when none can take it."""
        dialled = normalise(number)
        rule, order = self.route(dialled)
        target = rule.rewrite(dialled)
        available = self._lines()
        reasons: list[str] = []
        for line_id in order:
            line = available.get(line_id)
            if line is None:
                reasons.append(f"{line_id}: not configured")
                continue
            try:
                call = await line.dial(target, caller)
            except DialFailed as exc:
                if exc.reason in SKIP_TO_NEXT_LINE:
                    reasons.append(f"{line_id}: {exc}")
                    continue
                raise
            log.info("dialling %s on %s (rule %s)", target, line_id, rule.name or rule.pattern)
            return call
        detail = "; ".join(reasons) or "the rule names no line"
        raise DialFailed(DialFailure.LINE_DOWN, f"no line can dial {dialled} now ({detail})")
