"""Agents and queues: create, edit, delete agents (with passwords), queues and their members."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header

from appliance.api import schema as s
from tui.screens.base import SiteScreen
from tui.screens.forms import Choice, ConfirmScreen, Field, FormScreen, MessageScreen
from tui.widgets.tables import SiteTable, fill, selected_key, state_text


def split_list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def device_text(a: s.AgentView) -> Text:
    """Where the agent takes calls, and whether its desk phone is registered."""
    if not a.phone:
        return Text("desk phone (none set)" if a.device == "phone" else "browser", style="red" if a.device == "phone" else "")
    if a.phone_problem is None:
        state = Text("registered", style="green")
    elif "not reachable" in a.phone_problem:  # registered, but no answer to the box's OPTIONS
        state = Text("not reachable", style="red")
    else:
        state = Text("not registered", style="red")
    if a.device == "phone":
        return Text.assemble(f"desk phone {a.phone} (", state, ")")
    return Text.assemble("browser (phone ", a.phone, ": ", state, ")")


class AgentsScreen(SiteScreen):
    HELP = ("Changes are checked by the box, written to its config file and applied at once: a new agent "
            "can log in to the console straight away. Tab moves between the agents and the queues table; "
            "the keys act on the table that has the focus. Device says where each agent takes calls now "
            "(browser, or the SIP desk phone the agent chose in the console) and whether the agent's desk "
            "phone is registered. Edit sets an agent's desk-phone extension: one of the box's [sip] users "
            "(empty: browser only).")
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("x,delete", "delete", "Delete"),
        Binding("p", "password", "Reset password"),
        Binding("m", "members", "Members"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Vertical(id="people"):
            yield SiteTable(id="agents-table", cursor_type="row")
            yield SiteTable(id="queues-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        agents = self.query_one("#agents-table", DataTable)
        agents.border_title = "Agents (n new, e edit, x delete, p reset password)"
        agents.add_columns("Id", "Name", "State", "For", "Queues", "Calls", "Device")
        queues = self.query_one("#queues-table", DataTable)
        queues.border_title = "Queues (n new, e edit, x delete, m members)"
        queues.add_columns("Id", "Name", "Members", "Waiting", "Dispositions")
        agents.focus()
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        c = self.clock
        fill(self.query_one("#agents-table", DataTable),
             [(a.agent_id, (a.agent_id, a.name, state_text(a.state), c.age(a.since), ", ".join(a.queues) or "-",
                            str(a.calls_handled), device_text(a)))
              for a in site.agents], empty="no agents")
        fill(self.query_one("#queues-table", DataTable),
             [(q.queue_id, (q.queue_id, q.name, str(sum(1 for a in site.agents if q.queue_id in a.queues)), str(q.waiting),
                            ", ".join(q.dispositions))) for q in site.queues], empty="no queues")

    # --- helpers ---------------------------------------------------------------------------
    def _on_queues(self) -> bool:
        return self.focused is self.query_one("#queues-table")

    def _agent(self) -> s.AgentView | None:
        key = selected_key(self.query_one("#agents-table", DataTable))
        site = self.admin_app.site
        return next((a for a in site.agents if a.agent_id == key), None) if site else None

    def _queue(self) -> s.QueueView | None:
        key = selected_key(self.query_one("#queues-table", DataTable))
        site = self.admin_app.site
        return next((q for q in site.queues if q.queue_id == key), None) if site else None

    def _queue_choice(self, selected: tuple[str, ...]) -> Choice:
        site = self.admin_app.site
        options = tuple((q.queue_id, f"{q.queue_id} ({q.name})") for q in site.queues) if site else ()
        return Choice("queues", "Queues", options, selected)

    def _extensions_hint(self) -> str:
        site = self.admin_app.site
        extensions = site.box.extensions if site else ()
        return f"one of {', '.join(extensions)}" if extensions else "no desk phones in [sip] users"

    def _done(self, result: Any) -> None:
        if result is not None:
            self.notify(result.message, title="Saved")

    # --- actions ---------------------------------------------------------------------------
    def action_new(self) -> None:
        if self._on_queues():
            self._queue_form(None)
        else:
            self._agent_form(None)

    @on(DataTable.RowSelected)
    def action_edit(self) -> None:
        if self._on_queues():
            queue = self._queue()
            if queue is not None:
                self._queue_form(queue)
        else:
            agent = self._agent()
            if agent is not None:
                self._agent_form(agent)

    def _agent_form(self, agent: s.AgentView | None) -> None:
        client = self.client
        create = agent is None

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await client.put_agent(s.PutAgent(
                agent_id=v["agent_id"].strip(), name=v["name"].strip(), queues=v["queues"],
                password=v["password"] or None, create=create, phone=v["phone"].strip()))

        fields = [
            Field("agent_id", "Agent id (login)", agent.agent_id if agent else "", disabled=not create,
                  placeholder="lower-case letters, digits, . _ -"),
            Field("name", "Name", agent.name if agent else ""),
            Field("password", "Password" if create else "New password (empty keeps the current one)", password=True,
                  placeholder="at least 8 characters"),
            Field("phone", "Desk phone extension (empty: browser only)", agent.phone if agent else "",
                  placeholder=self._extensions_hint()),
        ]
        default_queues = agent.queues if agent else tuple(q.queue_id for q in self.admin_app.site.queues[:1]) if self.admin_app.site else ()
        self.app.push_screen(FormScreen("New agent" if create else f"Edit agent {agent.agent_id}", fields, submit,
                                        self._queue_choice(default_queues), blink=self.admin_app.blink), self._done)

    def _queue_form(self, queue: s.QueueView | None) -> None:
        client = self.client
        create = queue is None

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            try:
                ringback = float(v["ringback_s"] or "4")
            except ValueError:
                return s.CommandResult(False, "ringback must be a number of seconds")
            return await client.put_queue(s.PutQueue(queue_id=v["queue_id"].strip(), name=v["name"].strip(),
                                                     dispositions=split_list(v["dispositions"]), ringback_s=ringback, create=create))

        fields = [
            Field("queue_id", "Queue id", queue.queue_id if queue else "", disabled=not create),
            Field("name", "Name", queue.name if queue else ""),
            Field("dispositions", "Dispositions (comma separated)",
                  ", ".join(queue.dispositions) if queue else "resolved, follow-up, escalated, wrong number"),
            Field("ringback_s", "Ringback before hold music (s)", f"{queue.ringback_s:g}" if queue else "4"),
        ]
        self.app.push_screen(FormScreen("New queue" if create else f"Edit queue {queue.queue_id}", fields, submit,
                                        blink=self.admin_app.blink), self._done)

    def action_members(self) -> None:
        queue = self._queue()
        site = self.admin_app.site
        if queue is None or site is None:
            self.notify("select a queue (tab to the queues table)", severity="warning")
            return
        client = self.client

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await client.set_members(queue.queue_id, v["members"])

        members = tuple(a.agent_id for a in site.agents if queue.queue_id in a.queues)
        choice = Choice("members", "Members", tuple((a.agent_id, f"{a.agent_id} ({a.name})") for a in site.agents), members)
        self.app.push_screen(FormScreen(f"Members of {queue.queue_id}", [], submit, choice, blink=self.admin_app.blink), self._done)

    def action_delete(self) -> None:
        if self._on_queues():
            queue = self._queue()
            if queue is not None:
                self._confirm_then(f"Delete queue {queue.queue_id} ({queue.name})?", self.client.delete_queue, queue.queue_id)
        else:
            agent = self._agent()
            if agent is not None:
                self._confirm_then(f"Delete agent {agent.agent_id} ({agent.name})? They can no longer log in.",
                                   self.client.delete_agent, agent.agent_id)

    def action_password(self) -> None:
        agent = self._agent()
        if agent is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._reset_password(agent.agent_id)

        self.app.push_screen(ConfirmScreen(f"Reset the password of {agent.agent_id}? The box makes up a new one."), answered)

    def _confirm_then(self, question: str, call: Any, ident: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._run(call, ident)

        self.app.push_screen(ConfirmScreen(question), answered)

    @work(exit_on_error=False, group="agents-command")
    async def _run(self, call: Any, ident: str) -> None:
        try:
            result = await call(ident)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(result.message, severity="information" if result.ok else "error")

    @work(exit_on_error=False, group="agents-command")
    async def _reset_password(self, agent_id: str) -> None:
        try:
            result = await self.client.set_password(agent_id)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        if not result.ok:
            self.notify(result.message, severity="error")
            return
        self.app.push_screen(MessageScreen("New password",
                                           f"New password for [b]{agent_id}[/b]:\n\n  [b]{result.password}[/b]\n\n"
                                           "Give it to the agent now; it is not shown again."))
