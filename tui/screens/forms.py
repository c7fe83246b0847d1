"""Modal dialogs: a generic form that submits to the box and shows its answer, and a confirmation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static

from appliance.api.client import ApiCommandError, ApiUnavailable


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    value: str = ""
    password: bool = False
    placeholder: str = ""
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Choice:
    name: str
    label: str
    options: tuple[tuple[str, str], ...]  # (value, label)
    selected: tuple[str, ...] = field(default_factory=tuple)


Submit = Callable[[dict[str, Any]], Awaitable[Any]]  # returns a result with .ok and .message


class FormScreen(ModalScreen[Any]):
    """Fields, an optional multi-choice, Save/Cancel. Save calls ``submit``; the box's answer is shown.

    Closes with the box's result when it says ok; stays open with the message when refused.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, title: str, fields: list[Field], submit: Submit, choice: Choice | None = None,
                 blink: bool = True, save_label: str = "Save") -> None:
        super().__init__()
        self._title = title
        self._fields = fields
        self._submit = submit
        self._choice = choice
        self._blink = blink
        self._save_label = save_label

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            for f in self._fields:
                yield Label(f.label)
                yield Input(value=f.value, password=f.password, placeholder=f.placeholder, id=f"f-{f.name}",
                            disabled=f.disabled)
            if self._choice is not None:
                yield Label(self._choice.label)
                yield SelectionList[str](*[(label, value, value in self._choice.selected) for value, label in self._choice.options],
                                         id="f-choice")
            yield Static("", id="form-message")
            with Horizontal(id="form-buttons"):
                yield Button(self._save_label, variant="primary", id="form-save")
                yield Button("Cancel", id="form-cancel")

    def on_mount(self) -> None:
        self.query_one("#form").border_title = self._title
        for inp in self.query(Input):
            inp.cursor_blink = self._blink
        first = next((i for i in self.query(Input) if not i.disabled), None)
        if first is not None:
            first.focus()
        elif self._choice is not None:
            choices = self.query_one("#f-choice", SelectionList)
            choices.focus()
            choices.highlighted = 0

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: self.query_one(f"#f-{f.name}", Input).value for f in self._fields}
        if self._choice is not None:
            out[self._choice.name] = tuple(self.query_one("#f-choice", SelectionList).selected)
        return out

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#form-save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#form-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        self._run_submit(self.values())

    @work(exclusive=True, exit_on_error=False, group="form")
    async def _run_submit(self, values: dict[str, Any]) -> None:
        message = self.query_one("#form-message", Static)
        message.update("working...")
        try:
            result = await self._submit(values)
        except (ApiCommandError, ApiUnavailable, ValueError) as exc:
            message.update(f"[red]{exc}[/red]")
            return
        if getattr(result, "ok", False):
            self.dismiss(result)
        else:
            message.update(f"[red]{getattr(result, 'message', result)}[/red]")


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self._question)
            with Horizontal(id="form-buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class MessageScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self._title = title
        self._text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="message-box"):
            yield Static(self._text, id="message-text")
            yield Static("[dim]enter or escape closes[/dim]")

    def on_mount(self) -> None:
        self.query_one("#message-box").border_title = self._title
