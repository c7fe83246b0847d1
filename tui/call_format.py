"""How the TUI words a call: direction, who was dialled, how it ended, and its transfers.

Pure functions over the API's views, shared by the dashboard (live calls) and the calls
screen (stored records), so both say the same thing the same way.
"""
from __future__ import annotations

from rich.text import Text

from appliance.api import schema as s
from tui.widgets.tables import state_text

DIRECTION_LABELS = {"inbound": "in", "outbound": "out"}
OUTCOME_STYLES = {"answered": "green", "abandoned": "yellow", "no_agent": "red", "failed": "red", "menu_ended": "dim"}


def direction(value: str) -> str:
    return DIRECTION_LABELS.get(value, value or "?")


def live_number(call: s.CallView) -> str:
    """The customer's number: the caller of an inbound call, the number dialled for an outbound one."""
    return call.caller_number or call.caller_name or ("?" if call.direction == "outbound" else "withheld")


def live_state(call: s.CallView) -> Text:
    """The live call's state; a caller in an IVR menu shows the menu: "ivr main"."""
    text = state_text(call.state)
    if call.menu:
        text.append(f" {call.menu}")
    return text


def live_transfer(call: s.CallView) -> str:
    """Where a live call is in its transfers, and whether it is on hold: "part 2", "consulting",
    "part 2 · transferring", "on hold"."""
    parts = [f"part {call.segment}"] if call.segment > 1 else []
    if call.transfer:
        parts.append(call.transfer.replace("_", " "))
    if call.on_hold:
        parts.append("on hold")
    return " · ".join(parts) or "-"


def record_number(rec: s.CallRecordView) -> str:
    if rec.direction == "outbound":
        return rec.to_number or "?"
    return rec.from_number or "withheld"


def record_outcome(rec: s.CallRecordView) -> Text:
    """How the call ended. An outbound call that was not answered says why (busy, no answer, line down)."""
    if rec.direction == "outbound" and rec.outcome != "answered":
        return Text(rec.hangup_cause or rec.outcome, style="red")
    return Text(rec.outcome.replace("_", " "), style=OUTCOME_STYLES.get(rec.outcome, ""))


def record_transfer(rec: s.CallRecordView) -> str:
    """This segment's transfers: "from alice", "→ bob (attended)", or both."""
    parts = []
    if rec.transferred_from:
        parts.append(f"from {rec.transferred_from}")
    if rec.transferred_to:
        parts.append(f"→ {rec.transferred_to}" + (f" ({rec.transfer})" if rec.transfer else ""))
    elif rec.transfer:
        parts.append(f"→ ({rec.transfer})")
    return " · ".join(parts) or "-"


def record_party(rec: s.CallRecordView) -> str:
    """Who talked to the customer in this segment: the agent, or the external number it was sent to."""
    if rec.agent_name or rec.agent_id:
        return rec.agent_name or rec.agent_id or "-"
    if rec.segment > 1 and rec.to_number and rec.outcome == "answered":
        return rec.to_number
    return "-"
