"""The API's live model of the site: follows the hub, keeps what the hub does not, fans out deltas.

It subscribes to the hub topics ``acd``, ``calls`` and ``lines`` and turns domain events
into API deltas on one private bounded topic that each event-stream client subscribes
to. It also keeps what no other component keeps: the latest ``LineStatus`` per line with
a short signal history, and today's per-queue counters for the service level.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

from appliance.acd.events import AgentChanged as AcdAgentChanged
from appliance.acd.events import QueueChanged as AcdQueueChanged
from appliance.api import schema as s
from appliance.api.views import (
    agent_view, call_view, driver_capabilities, driver_line_id, line_alarms, line_view, silent_line_view,
    store_alarm_view,
)
from appliance.call_events import CallUpdate
from appliance.config import QueueConfig
from appliance.hub import Overflow, Subscription, Topic
from appliance.lines import LineStatus

log = logging.getLogger(__name__)

SIGNAL_HISTORY = 240  # samples kept per line: one per change or per minute -> at least 4 h of history
SIGNAL_SAMPLE_S = 60.0  # an unchanged signal is still sampled this often so the plot has a time axis
ALARM_POLL_S = 5.0  # the store raises alarms without telling anyone; its list is short, poll it this often
# (agents' devices are polled on the same tick: a desk phone (un)registering or an agent switching
# device in the console publishes nothing, and a 5 s lag is fine for the admin's agents table)
FANOUT_QUEUE = 1024  # deltas a slow client may lag; beyond that it gets a fresh snapshot instead
RESYNC = object()  # on the deltas topic: "deltas were lost; send clients a fresh snapshot"
SEED_CALLS = 5000  # stored records read at start to count today's calls (a busy branch does < 1000/day)


@dataclass(slots=True)
class _QueueDay:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    in_sl: int = 0


@dataclass(slots=True)
class _CallTrack:
    """One call's visit to one queue, counted under ``key`` when it ends."""

    queue_id: str | None
    key: str
    enqueued_at: float | None = None
    answered_at: float | None = None


class SiteFeed:
    def __init__(self, box: Any, clock: Callable[[], float] = time.time) -> None:
        self._box = box
        self._clock = clock
        self.deltas: Topic[s.Event] = Topic("api-deltas", maxsize=FANOUT_QUEUE, overflow=Overflow.DROP_OLDEST)
        self._status: dict[str, LineStatus] = {}
        self._history: dict[str, deque[s.SignalSample]] = {}
        self._day = date.today()
        self._stats: dict[str, _QueueDay] = {}
        self._counted: set[str] = set()
        self._tracks: dict[str, _CallTrack] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._alarm_timer: asyncio.TimerHandle | None = None
        self._last_alarms: tuple[s.AlarmView, ...] = ()
        self._devices: dict[str, tuple[str, str, str | None]] = {}  # agent id -> device facts last published

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        hub = self._box.hub
        pumps = {"acd": self._on_acd, "calls": self._on_call, "lines": self._on_line}
        for name, handler in pumps.items():
            sub = hub.topic(name).subscribe()
            self._subs.append(sub)
            task = asyncio.get_running_loop().create_task(self._pump(sub, handler, name), name=f"api-feed-{name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        manager = getattr(self._box, "lines", None)
        for status in getattr(manager, "status", lambda: [])():  # lines that came up before the API
            self._on_line(status, publish=False)
        await self._seed_today()
        self._last_alarms = self.alarms()
        self._alarm_timer = asyncio.get_running_loop().call_later(ALARM_POLL_S, self._poll_alarms)

    async def stop(self) -> None:
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
        for sub in self._subs:
            sub.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # raises nothing of theirs; our own cancellation still propagates

    async def _pump(self, sub: Subscription, handler: Callable[[Any], None], topic: str) -> None:
        dropped = 0
        async for event in sub:
            try:
                handler(event)
            except Exception:  # one odd event must not stop the admin view of the box
                log.exception("local API: could not handle %s", type(event).__name__)
            now_dropped = sub.statistics().dropped
            if now_dropped != dropped:  # the hub dropped events for us: deltas would be wrong
                log.warning("local API fell %d events behind on topic %s; clients get a fresh snapshot",
                            now_dropped - dropped, topic)
                dropped = now_dropped
                self.deltas.publish(RESYNC)

    async def _seed_today(self) -> None:
        store = self._box.store
        if store is None:
            return
        try:
            records = await store.recent_calls(SEED_CALLS)
        except Exception as exc:
            log.warning("local API: cannot read today's calls for the service level (%s); counting from now", exc)
            return
        for rec in records:
            if date.fromtimestamp(rec.arrived_at) != self._day or rec.enqueued_at is None:
                continue
            answered = rec.answered_at if str(rec.outcome) == "answered" else None
            self._count(rec.call_id, rec.queue, rec.enqueued_at, answered)

    # --- hub events ------------------------------------------------------------------------
    def _on_acd(self, event: Any) -> None:
        if isinstance(event, AcdAgentChanged):
            self.deltas.publish(s.AgentChanged(self.agent_view(event.agent)))
        elif isinstance(event, AcdQueueChanged):
            qcfg = self._queue_config(event.queue_id)
            if qcfg is not None:
                self.deltas.publish(s.QueueChanged(self.queue_view(qcfg, event.waiting, event.longest_wait_since)))

    def _on_call(self, event: Any) -> None:
        if not isinstance(event, CallUpdate):
            return
        snap = event.call
        # Transfers: a call keeps its id in every snapshot, so moving between agents (blind,
        # attended, back to the front of its queue) never counts as a second offered or
        # answered call. A blind transfer into *another* queue is a new visit there: the
        # visit to the old queue is counted now, and the new one counts in its queue as
        # offered (then answered or abandoned), under the id of the segment it will become
        # (f"{call_id}-{n}", as in the stored records, so seeding at start-up agrees).
        track = self._tracks.setdefault(snap.call_id, _CallTrack(snap.queue_id, snap.call_id))
        if track.queue_id is None and snap.queue_id is not None:  # an IVR menu chose the first queue
            track.queue_id = snap.queue_id
        elif snap.queue_id != track.queue_id and snap.queue_id is not None:
            self._count_visit(track)
            track = self._tracks[snap.call_id] = _CallTrack(snap.queue_id, f"{snap.call_id}-{snap.segment + 1}")
        state = str(snap.state)
        if state == "queued" and track.enqueued_at is None:
            track.enqueued_at = snap.since
        elif state == "on_call" and track.answered_at is None:
            track.answered_at = snap.since
        self.deltas.publish(s.CallChanged(call_view(snap)))
        if state == "ended":
            self._tracks.pop(snap.call_id, None)
            self._count_visit(track)

    def _count_visit(self, track: _CallTrack) -> None:
        if track.enqueued_at is not None and self._count(track.key, track.queue_id, track.enqueued_at, track.answered_at):
            qcfg = self._queue_config(track.queue_id)
            if qcfg is not None:
                self.deltas.publish(s.QueueChanged(self.queue_view(qcfg)))

    def _on_line(self, status: Any, publish: bool = True) -> None:
        if not isinstance(status, LineStatus):
            return
        if status.port:  # a GSM line is renamed gsm:<port> -> gsm:<IMEI> once the modem answers
            for old_id, old in list(self._status.items()):
                if old_id != status.line_id and old.port == status.port and old.kind == status.kind:
                    del self._status[old_id]
                    if publish:
                        self.deltas.publish(s.LineRemoved(old_id))
        self._status[status.line_id] = status
        if status.signal is not None:
            hist = self._history.setdefault(status.line_id, deque(maxlen=SIGNAL_HISTORY))
            at = status.updated or self._clock()
            if not hist or hist[-1].signal != status.signal or at - hist[-1].at >= SIGNAL_SAMPLE_S:
                hist.append(s.SignalSample(at, status.signal))
        if publish:
            self.deltas.publish(s.LineChanged(self._line_view(status)))
            self._poll_alarms(reschedule=False)

    def _poll_alarms(self, reschedule: bool = True) -> None:
        current = self.alarms()
        if current != self._last_alarms:
            self._last_alarms = current
            self.deltas.publish(s.AlarmsChanged(current))
        if reschedule:
            self._alarm_timer = asyncio.get_running_loop().call_later(ALARM_POLL_S, self._poll_alarms)
            try:
                self.refresh_devices()
            except Exception:  # the admin's view of devices must never stop the alarm poll
                log.exception("local API: could not refresh the agents' devices")

    # --- service level ---------------------------------------------------------------------
    def _count(self, call_id: str, queue_id: str | None, enqueued_at: float, answered_at: float | None) -> bool:
        today = date.today()
        if today != self._day:
            self._day, self._stats, self._counted = today, {}, set()
        if call_id in self._counted or queue_id is None:
            return False
        self._counted.add(call_id)
        day = self._stats.setdefault(queue_id, _QueueDay())
        day.offered += 1
        if answered_at is None:
            day.abandoned += 1
        else:
            day.answered += 1
            if answered_at - enqueued_at <= s.SERVICE_LEVEL_THRESHOLD_S:
                day.in_sl += 1
        return True

    # --- agents' devices -------------------------------------------------------------------
    def _device_facts(self, agent_id: str) -> tuple[str, str, str | None]:
        """(device, phone extension, why that phone cannot take calls) for one agent."""
        agent = self._box.agent_config(agent_id)
        phone = agent.phone if agent is not None else ""
        devices = getattr(self._box, "devices", None)
        if devices is None:
            return "browser", phone, None
        return str(devices.device(agent_id)), phone, devices.phone_problem(agent_id) if phone else None

    def agent_view(self, snap: Any) -> s.AgentView:
        facts = self._devices[snap.agent_id] = self._device_facts(snap.agent_id)
        return agent_view(snap, device=facts[0], phone=facts[1], phone_problem=facts[2])

    def refresh_devices(self) -> None:
        """Publish the agents whose device, phone or phone registration changed since last shown."""
        acd = self._box.acd
        if acd is None:
            return
        agents = acd.agents()
        for snap in agents:
            if self._devices.get(snap.agent_id) != self._device_facts(snap.agent_id):
                self.deltas.publish(s.AgentChanged(self.agent_view(snap)))
        if len(self._devices) > len(agents):  # forget deleted agents
            current = {a.agent_id for a in agents}
            self._devices = {k: v for k, v in self._devices.items() if k in current}

    # --- views -----------------------------------------------------------------------------
    def _queue_config(self, queue_id: str | None) -> QueueConfig | None:
        return next((q for q in self._box.cfg.queues if q.id == queue_id), None)

    def queue_view(self, qcfg: QueueConfig, waiting: int | None = None, longest: float | None = None) -> s.QueueView:
        if waiting is None:
            acd = self._box.acd
            calls = acd.waiting(qcfg.id) if acd is not None else []
            waiting = len(calls)
            longest = min((c.enqueued_at for c in calls), default=None)
        day = self._stats.get(qcfg.id, _QueueDay()) if date.today() == self._day else _QueueDay()
        return s.QueueView(
            queue_id=qcfg.id, name=qcfg.name, waiting=waiting, longest_wait_since=longest,
            offered_today=day.offered, answered_today=day.answered, abandoned_today=day.abandoned,
            answered_in_sl_today=day.in_sl, dispositions=tuple(qcfg.dispositions), ringback_s=qcfg.ringback_s,
        )

    def _line_view(self, status: LineStatus) -> s.LineView:
        driver = self.driver(status.line_id)
        caps = driver_capabilities(driver) if driver is not None else ()
        return line_view(status, caps, tuple(self._history.get(status.line_id, ())))

    def drivers(self) -> list[Any]:
        """Every running line driver: the box's SIP line(s) and the modem lines of its LineManager."""
        drivers = list(getattr(self._box, "sip_lines", []))
        manager = getattr(self._box, "lines", None)
        drivers += list(getattr(manager, "lines", {}).values())
        return drivers

    def driver(self, line_id: str) -> Any | None:
        return next((d for d in self.drivers() if driver_line_id(d) == line_id), None)

    def line_views(self) -> tuple[s.LineView, ...]:
        now = self._clock()
        views = {lid: self._line_view(st) for lid, st in self._status.items()}
        for driver in self.drivers():
            lid = driver_line_id(driver)
            if lid and lid not in views:
                views[lid] = silent_line_view(driver, lid, now)
        return tuple(views[k] for k in sorted(views))

    def alarms(self) -> tuple[s.AlarmView, ...]:
        store = self._box.store
        stored = [store_alarm_view(a) for a in store.alarms()] if store is not None else []
        return tuple(stored + line_alarms(self.line_views()))

    def publish(self, event: s.Event) -> None:
        """Admin commands announce what they changed (agent removed, queue edited)."""
        self.deltas.publish(event)

    def snapshot(self, box_info: s.BoxInfo) -> s.SiteSnapshot:
        box = self._box
        agents = tuple(self.agent_view(a) for a in box.acd.agents()) if box.acd is not None else ()
        calls = tuple(call_view(c) for c in box.live_calls())
        return s.SiteSnapshot(
            at=self._clock(),
            box=box_info,
            agents=tuple(sorted(agents, key=lambda a: a.agent_id)),
            queues=tuple(self.queue_view(q) for q in box.cfg.queues),
            calls=calls,
            lines=self.line_views(),
            alarms=self.alarms(),
        )

