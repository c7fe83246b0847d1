"""Folding the API's deltas into the latest ``SiteSnapshot`` (pure functions)."""
from __future__ import annotations

from dataclasses import replace

from appliance.api import schema as s


def _put(items: tuple, item: object, key: str) -> tuple:
    ident = getattr(item, key)
    out = [item if getattr(x, key) == ident else x for x in items]
    if not any(getattr(x, key) == ident for x in items):
        out.append(item)
    return tuple(sorted(out, key=lambda x: getattr(x, key)))


def apply(site: s.SiteSnapshot | None, event: s.Event) -> s.SiteSnapshot | None:
    """The site after ``event``; a snapshot replaces everything, deltas before one are ignored."""
    if isinstance(event, s.SiteSnapshot):
        return event
    if site is None:
        return None
    if isinstance(event, s.AgentChanged):
        return replace(site, agents=_put(site.agents, event.agent, "agent_id"))
    if isinstance(event, s.AgentRemoved):
        return replace(site, agents=tuple(a for a in site.agents if a.agent_id != event.agent_id))
    if isinstance(event, s.CallChanged):
        calls = tuple(c for c in site.calls if c.call_id != event.call.call_id)
        if event.call.state != "ended":
            calls = tuple(sorted(calls + (event.call,), key=lambda c: c.arrived_at))
        return replace(site, calls=calls)
    if isinstance(event, s.LineChanged):
        return replace(site, lines=_put(site.lines, event.line, "line_id"))
    if isinstance(event, s.LineRemoved):
        return replace(site, lines=tuple(ln for ln in site.lines if ln.line_id != event.line_id))
    if isinstance(event, s.QueueChanged):
        order = [q.queue_id for q in site.queues]
        queues = {q.queue_id: q for q in site.queues}
        queues[event.queue.queue_id] = event.queue
        if event.queue.queue_id not in order:
            order.append(event.queue.queue_id)
        return replace(site, queues=tuple(queues[i] for i in order))
    if isinstance(event, s.QueueRemoved):
        return replace(site, queues=tuple(q for q in site.queues if q.queue_id != event.queue_id))
    if isinstance(event, s.AlarmsChanged):
        return replace(site, alarms=event.alarms)
    return site
