"""Dashboard: every line, queue, agent, live call and alarm on one screen."""
from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import DataTable, Footer, Header

from appliance.api import schema as s
from tui.call_format import direction, live_number, live_state, live_transfer
from tui.screens.base import SiteScreen
from tui.widgets.signal import signal_bars
from tui.widgets.tables import SiteTable, fill, state_text

AGENT_ORDER = ("on_call", "reserved", "wrap_up", "available", "paused", "logged_out")


def line_summary(line: s.LineView) -> str:
    if line.kind == "gsm":
        parts = [line.operator or "no operator", line.registration or "", f"SIM {line.sim}" if line.sim else ""]
        return " ".join(p for p in parts if p)
    return line.detail


def service_level(q: s.QueueView) -> Text:
    sl = q.service_level
    if sl is None:
        return Text("-", style="dim")
    return Text(f"{sl:.0%}", style="green" if sl >= 0.8 else "yellow" if sl >= 0.6 else "red")


TICK_S = 1.0  # the "For" columns count in whole seconds


class DashboardScreen(SiteScreen):
    HELP = ("The dashboard shows the whole branch: lines (GSM signal, operator, SIM, registration), "
            "queues (waiting, longest wait, today's service level: answered within 20 s), agents by state "
            "with time in state, live calls and alarms. Live calls show the direction (in, or out for a "
            "call an agent places; 'dialing' until it is answered), the agent talking to the customer now, "
            "the line, and a transfer in progress or the part of a transferred call. It updates live.")

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Grid(id="dash"):
            yield SiteTable(id="dash-lines", cursor_type="row", zebra_stripes=False)
            yield SiteTable(id="dash-queues", cursor_type="row")
            yield SiteTable(id="dash-agents", cursor_type="row")
            yield SiteTable(id="dash-calls", cursor_type="row")
            yield SiteTable(id="dash-alarms", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        spec = {
            "dash-lines": ("Lines", ("Line", "State", "Sig", "Detail")),
            "dash-queues": ("Queues", ("Queue", "Wait", "Longest", "SL today")),
            "dash-agents": ("Agents", ("Agent", "State", "For")),
            "dash-calls": ("Live calls", ("Dir", "Number", "State", "Agent", "For", "Line", "Transfer")),
            "dash-alarms": ("Alarms", ("Time", "Source", "Alarm")),
        }
        for table_id, (title, columns) in spec.items():
            table = self.query_one(f"#{table_id}", DataTable)
            table.border_title = title
            table.add_columns(*columns)
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)
        self.set_interval(TICK_S, self._tick)  # time in state / on call keeps counting between events

    def _tick(self) -> None:
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        c = self.clock
        fill(self.query_one("#dash-lines", DataTable),
             [(ln.line_id, (ln.line_id, state_text(ln.state), signal_bars(ln.signal) if ln.kind == "gsm" else "", line_summary(ln)))
              for ln in site.lines], empty="no lines")
        fill(self.query_one("#dash-queues", DataTable),
             [(q.queue_id, (q.name, str(q.waiting), c.age(q.longest_wait_since) if q.waiting else "-", service_level(q)))
              for q in site.queues], empty="no queues")
        counts = Counter(a.state for a in site.agents)
        agents = sorted(site.agents, key=lambda a: (AGENT_ORDER.index(a.state) if a.state in AGENT_ORDER else 99, a.agent_id))
        table = self.query_one("#dash-agents", DataTable)
        fill(table, [(a.agent_id, (a.name, state_text(a.state), c.age(a.since))) for a in agents], empty="no agents")
        table.border_subtitle = " ".join(f"{st.replace('_', ' ')} {counts[st]}" for st in AGENT_ORDER if counts[st])
        fill(self.query_one("#dash-calls", DataTable),
             [(k.call_id, (direction(k.direction), live_number(k), live_state(k), k.agent_name or k.agent_id or "-",
                           c.age(k.since), k.line_id or "-", live_transfer(k)))
              for k in site.calls], empty="no calls")
        alarms = self.query_one("#dash-alarms", DataTable)
        fill(alarms, [(f"{a.source}:{a.kind}:{a.subject}", (c.time_of_day(a.at), a.source, Text(f"{a.subject}: {a.message}", style="red")))
                      for a in site.alarms], empty="no alarms")
        alarms.border_subtitle = f"{len(site.alarms)} active" if site.alarms else ""
