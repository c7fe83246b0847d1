"""Domain objects -> the API's view dataclasses (pure functions, no I/O)."""
from __future__ import annotations

from typing import Any

from appliance.acd.agent import AgentSnapshot
from appliance.api.schema import (
    AgentView, AlarmView, CallRecordView, CallView, DialRuleView, LineView, MessageView, SignalSample,
)
from appliance.call_events import LiveCallSnapshot
from appliance.lines import LineStatus
from appliance.records import CallRecord

# Line commands and the driver method each needs; a line offers those its driver has.
LINE_ACTIONS: dict[str, str] = {
    "enable": "enable",
    "disable": "disable",
    "reset": "reset",
    "test_sms": "send_sms",
    "ussd": "ussd",
}


def agent_view(snap: AgentSnapshot, *, device: str = "browser", phone: str = "",
               phone_problem: str | None = None) -> AgentView:
    return AgentView(
        agent_id=snap.agent_id,
        name=snap.name,
        state=str(snap.state),
        since=snap.since,
        queues=tuple(snap.queues),
        pause_reason=snap.pause_reason,
        call_id=snap.call_id,
        calls_handled=snap.calls_handled,
        device=device,
        phone=phone,
        phone_problem=phone_problem if phone else None,
    )


def call_view(snap: LiveCallSnapshot) -> CallView:
    return CallView(
        call_id=snap.call_id,
        line_id=snap.line_id,
        line_kind=snap.line_kind,
        caller_number=snap.caller_number,
        caller_name=snap.caller_name,
        queue_id=snap.queue_id,
        state=str(snap.state),
        since=snap.since,
        arrived_at=snap.arrived_at,
        agent_id=snap.agent_id,
        agent_name=snap.agent_name,
        hangup_cause=snap.hangup_cause,
        recording=snap.recording,
        direction=snap.direction,
        segment=snap.segment,
        transfer=snap.transfer,
        on_hold=snap.on_hold,
        menu=snap.menu,
    )


def line_view(status: LineStatus, capabilities: tuple[str, ...], history: tuple[SignalSample, ...]) -> LineView:
    return LineView(
        line_id=status.line_id,
        kind=str(status.kind),
        state=status.state,
        detail=status.detail,
        signal=status.signal,
        operator=status.operator,
        registration=status.registration,
        sim=status.sim,
        imei=status.imei,
        iccid=status.iccid,
        model=status.model,
        firmware=status.firmware,
        port=status.port,
        calls=status.calls,
        updated=status.updated,
        capabilities=capabilities,
        signal_history=history,
    )


def driver_line_id(driver: Any) -> str | None:
    line_id = getattr(driver, "line_id", None) or getattr(getattr(driver, "config", None), "line_id", None)
    return str(line_id) if line_id else None


def driver_capabilities(driver: Any) -> tuple[str, ...]:
    return tuple(action for action, method in LINE_ACTIONS.items() if callable(getattr(driver, method, None)))


def silent_line_view(driver: Any, line_id: str, now: float) -> LineView:
    """A running driver that has not published a ``LineStatus``: say only what we know."""
    kind = getattr(driver, "kind", None) or type(driver).__name__.lower().removesuffix("line") or "line"
    calls = getattr(driver, "active_calls", 0)
    calls = calls() if callable(calls) else calls
    return LineView(line_id=line_id, kind=str(kind), state="up", detail="running; this driver publishes no status",
                    calls=int(calls or 0), updated=now, capabilities=driver_capabilities(driver))


def line_alarms(lines: tuple[LineView, ...]) -> list[AlarmView]:
    out = []
    for line in lines:
        if line.state == "down":
            out.append(AlarmView("line", "line_down", line.line_id, line.detail or "line is down", line.updated))
        elif line.sim and line.sim not in ("ready",):
            out.append(AlarmView("line", "sim", line.line_id, f"SIM {line.sim}", line.updated))
        elif line.registration in ("denied", "searching"):
            out.append(AlarmView("line", "registration", line.line_id, f"network registration {line.registration}", line.updated))
    return out


def store_alarm_view(alarm: Any) -> AlarmView:
    return AlarmView("store", str(getattr(alarm, "kind", "alarm")), str(getattr(alarm, "subject", "")),
                     str(getattr(alarm, "message", alarm)), float(getattr(alarm, "at", 0.0)))


def record_view(rec: CallRecord) -> CallRecordView:
    return CallRecordView(
        call_id=rec.call_id,
        line_id=rec.line_id,
        direction=rec.direction,
        from_number=rec.from_number,
        from_name=rec.from_name,
        to_number=rec.to_number,
        queue=rec.queue,
        outcome=str(rec.outcome),
        hangup_cause=str(rec.hangup_cause),
        arrived_at=rec.arrived_at,
        answered_at=rec.answered_at,
        ended_at=rec.ended_at,
        wait_s=rec.wait_s,
        talk_s=rec.talk_s,
        wrapup_s=rec.wrapup_s,
        agent_id=rec.agent_id,
        agent_name=rec.agent_name,
        disposition=rec.disposition,
        offers=tuple(rec.offers),
        recording_path=rec.recording_path,
        recording_s=rec.recording_s,
        dtmf=rec.dtmf,
        hold_s=rec.hold_s,
        holds=rec.holds,
        segment=rec.segment,
        transfer=rec.transfer,
        transferred_to=rec.transferred_to,
        transferred_from=rec.transferred_from,
        parent_call_id=rec.parent_call_id,
        ivr=tuple(rec.ivr),
    )


def dial_rule_view(rule: Any) -> DialRuleView:
    """An ``appliance.dialplan.DialRule`` as the API shows it."""
    return DialRuleView(pattern=rule.pattern, via=tuple(rule.via), strip=rule.strip, prepend=rule.prepend, name=rule.name)


def message_view(msg: Any) -> MessageView:
    return MessageView(at=msg.at, channel=str(msg.channel), direction=msg.direction, number=msg.number, body=msg.body)
