"""The outbound dial plan for the site admin: its rules, and "which line would dial this number?".

Read-only: the rules come from the box's config (``[[dial_plan]]``) and the answer from the
running box's ``DialPlan.route`` with the lines it has now. Nothing is dialled.
"""
from __future__ import annotations

from typing import Any

from appliance.api import schema as s
from appliance.api.views import dial_rule_view
from appliance.dialplan import DialPlan, normalise
from appliance.lines import DialFailed

NOT_CONFIGURED = "not configured"  # a rule names a line (or kind) this box does not have
CONFIGURED = "configured"  # the box can dial on it but no line status says more (the SIP trunk)


def _plan(box: Any) -> DialPlan:
    return box.dial_plan if getattr(box, "dial_plan", None) is not None else DialPlan(box.cfg.dial_plan, box.diallers)


def _route_line(box: Any, line_id: str, view: s.LineView | None, configured: bool) -> s.RouteLine:
    if not configured:
        return s.RouteLine(line_id, NOT_CONFIGURED)
    if view is not None:
        return s.RouteLine(line_id, view.state, view.detail)
    if line_id == "trunk":
        return _trunk_line(box)
    return s.RouteLine(line_id, CONFIGURED)


def _trunk_line(box: Any) -> s.RouteLine:
    """The SIP trunk's registration, when the SIP line keeps one (a trunk without registration is just configured)."""
    sip = next(iter(getattr(box, "sip_lines", [])), None)
    status_of = getattr(sip, "trunk_status", None)
    status = status_of() if callable(status_of) else None
    if status is None:
        return s.RouteLine("trunk", CONFIGURED)
    state = str(getattr(status, "state", ""))
    shown = {"registered": "up", "failing": "down"}.get(state, state or CONFIGURED)
    return s.RouteLine("trunk", shown, str(getattr(status, "reason", "") or state))


def dial_plan_view(box: Any) -> s.DialPlanView:
    return s.DialPlanView(rules=tuple(dial_rule_view(r) for r in box.cfg.dial_plan), lines=tuple(sorted(box.diallers())))


def route_number(box: Any, line_views: tuple[s.LineView, ...], number: str) -> s.RouteResult:
    """The rule that matches ``number`` and the lines it would try, in order, with their state now."""
    try:
        cleaned = normalise(number)
    except DialFailed as exc:
        return s.RouteResult(False, exc.detail or str(exc))
    try:
        rule, order = _plan(box).route(cleaned)
    except DialFailed as exc:
        return s.RouteResult(False, exc.detail or str(exc), number=cleaned)
    rules = list(box.cfg.dial_plan)
    rule_no = rules.index(rule) + 1 if rule in rules else 0
    diallers = box.diallers()
    views = {ln.line_id: ln for ln in line_views}
    lines = tuple(_route_line(box, lid, views.get(lid), lid in diallers) for lid in order)
    label = f"rule {rule_no}" + (f" ({rule.name})" if rule.name else f" ({rule.pattern})")
    dialled = rule.rewrite(cleaned)
    usable = [ln.line_id for ln in lines if ln.state != NOT_CONFIGURED]
    if usable:
        message = f"{label}: dials {dialled} on {', '.join(usable)}, in that order"
    else:
        message = f"{label}: none of its lines ({', '.join(order) or 'none'}) is configured on this box"
    return s.RouteResult(True, message, number=cleaned, rule_no=rule_no, rule=dial_rule_view(rule), dialled=dialled,
                         lines=lines)
