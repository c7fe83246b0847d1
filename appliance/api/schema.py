"""The local API's wire model: frozen dataclasses and the one codec to and from JSON.

Every message is a JSON object ``{"v": 1, "type": <name>, ...fields}``. This module is the
only place that turns these dataclasses into dicts and back, and the only ``appliance``
module the TUI imports (with ``client``). It imports nothing from the rest of the box so a
later web wallboard can reuse it unchanged.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

VERSION = 1
SERVICE_LEVEL_THRESHOLD_S = 20.0  # the classic 80/20 target: answered within 20 s counts as "in SL"


class SchemaError(ValueError):
    """A message that does not fit the schema; the text says which field and why."""


# --- the site model ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BoxInfo:
    branch: str
    pid: int
    started_at: float
    web_url: str
    sip_udp: int | None
    sip_tcp: int | None
    config_path: str  # where admin changes are written
    extensions: tuple[str, ...] = ()  # desk-phone extensions ([sip] users) an agent's phone may be


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    name: str
    state: str  # logged_out | available | reserved | on_call | wrap_up | paused
    since: float
    queues: tuple[str, ...] = ()
    pause_reason: str | None = None
    call_id: str | None = None
    calls_handled: int = 0
    device: str = "browser"  # where the agent takes calls now: browser | phone
    phone: str = ""  # the desk-phone extension configured for the agent ("" when none)
    phone_problem: str | None = None  # why that phone cannot take calls now; None when it is registered


@dataclass(frozen=True, slots=True)
class QueueView:
    queue_id: str
    name: str
    waiting: int = 0
    longest_wait_since: float | None = None  # enqueue time of the oldest waiting call
    offered_today: int = 0  # calls that entered the queue today (ended)
    answered_today: int = 0
    abandoned_today: int = 0
    answered_in_sl_today: int = 0  # answered within SERVICE_LEVEL_THRESHOLD_S
    dispositions: tuple[str, ...] = ()
    ringback_s: float = 4.0

    @property
    def service_level(self) -> float | None:
        """Share of today's ended calls answered within the threshold; None before the first call."""
        return None if self.offered_today == 0 else self.answered_in_sl_today / self.offered_today


@dataclass(frozen=True, slots=True)
class CallView:
    call_id: str
    line_id: str
    line_kind: str
    caller_number: str | None
    caller_name: str | None
    queue_id: str | None
    state: str  # arriving | ivr | queued | offered | on_call | ended
    since: float
    arrived_at: float
    agent_id: str | None = None
    agent_name: str | None = None
    hangup_cause: str | None = None
    recording: bool = False
    direction: str = "inbound"  # inbound | outbound (caller_number is then the number dialled)
    segment: int = 1  # which party segment the call is in: 2 after the first transfer, ...
    transfer: str | None = None  # transfer phase in progress (dialing, transferring, consulting, ...), else None
    on_hold: bool = False  # the agent put the caller on hold
    menu: str | None = None  # the IVR menu the caller is in (state "ivr"); queue_id is None until routed


@dataclass(frozen=True, slots=True)
class SignalSample:
    at: float
    signal: int  # 0-31 (+CSQ scale)


@dataclass(frozen=True, slots=True)
class LineView:
    line_id: str
    kind: str  # sip | gsm | analog
    state: str  # up | down | starting | disabled | registering | unknown
    detail: str = ""
    signal: int | None = None
    operator: str | None = None
    registration: str | None = None
    sim: str | None = None
    imei: str | None = None
    iccid: str | None = None
    model: str | None = None
    firmware: str | None = None
    port: str | None = None
    calls: int = 0
    updated: float = 0.0
    capabilities: tuple[str, ...] = ()  # line commands this line's driver offers
    signal_history: tuple[SignalSample, ...] = ()


@dataclass(frozen=True, slots=True)
class AlarmView:
    source: str  # "store" | "line"
    kind: str
    subject: str
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    at: float
    box: BoxInfo
    agents: tuple[AgentView, ...]
    queues: tuple[QueueView, ...]
    calls: tuple[CallView, ...]
    lines: tuple[LineView, ...]
    alarms: tuple[AlarmView, ...]


# --- deltas on /v1/events ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentChanged:
    agent: AgentView


@dataclass(frozen=True, slots=True)
class AgentRemoved:
    agent_id: str


@dataclass(frozen=True, slots=True)
class CallChanged:
    call: CallView  # state "ended" means it is gone from the live list


@dataclass(frozen=True, slots=True)
class LineChanged:
    line: LineView


@dataclass(frozen=True, slots=True)
class LineRemoved:
    line_id: str  # e.g. a GSM line renamed from gsm:<port> to gsm:<IMEI> once the modem answered


@dataclass(frozen=True, slots=True)
class QueueChanged:
    queue: QueueView


@dataclass(frozen=True, slots=True)
class QueueRemoved:
    queue_id: str


@dataclass(frozen=True, slots=True)
class AlarmsChanged:
    alarms: tuple[AlarmView, ...]  # the whole current list (it is short)


# --- logs on /v1/logs ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    at: float
    level: str  # DEBUG | INFO | WARNING | ERROR | CRITICAL
    levelno: int
    logger: str
    message: str


# --- stored records ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallRecordView:
    call_id: str
    line_id: str
    direction: str
    from_number: str | None
    from_name: str | None
    to_number: str | None
    queue: str | None
    outcome: str
    hangup_cause: str
    arrived_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    wrapup_s: float | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    disposition: str | None = None
    offers: tuple[str, ...] = ()
    recording_path: str | None = None
    recording_s: float | None = None
    dtmf: str = ""
    hold_s: float | None = None  # time the agent kept the caller on hold (part of talk_s); None: never held
    holds: int = 0
    segment: int = 1  # 1 for the first party of a call; n > 1 after n-1 transfers
    transfer: str = ""  # how this segment handed the caller on: blind | attended | "" (it did not)
    transferred_to: str | None = None  # agent id, queue id or number the caller was handed to
    transferred_from: str | None = None  # agent id that handed the caller to this segment
    parent_call_id: str | None = None  # call id of segment 1: every segment of one customer call shares it
    ivr: tuple[str, ...] = ()  # the caller's way through the IVR menus: "main:2", "main:timeout", ...


@dataclass(frozen=True, slots=True)
class MessageView:
    at: float
    channel: str
    direction: str
    number: str
    body: str


@dataclass(frozen=True, slots=True)
class DialRuleView:
    pattern: str  # regular expression matched against the whole (cleaned) number
    via: tuple[str, ...]  # line kinds (trunk, gsm, analog) or line ids, tried in order
    strip: int = 0  # digits removed from the front before dialling
    prepend: str = ""  # added in front before dialling
    name: str = ""


@dataclass(frozen=True, slots=True)
class DialPlanView:
    rules: tuple[DialRuleView, ...]  # tried in order; the first match wins
    lines: tuple[str, ...]  # line ids that can place calls on this box now ("trunk", "gsm:<imei>", ...)


@dataclass(frozen=True, slots=True)
class RouteLine:
    line_id: str
    state: str  # up | down | starting | ... from the line's status; "not configured" when the box has no such line
    detail: str = ""  # the line's own words (a GSM line's detail, why the trunk is failing)


@dataclass(frozen=True, slots=True)
class RouteResult:
    ok: bool  # False: the number cannot be dialled (message says why)
    message: str
    number: str = ""  # the number as cleaned for matching
    rule_no: int = 0  # 1-based position of the matching rule; 0 when none
    rule: DialRuleView | None = None
    dialled: str = ""  # what the line is asked to dial (after strip/prepend)
    lines: tuple[RouteLine, ...] = ()  # tried in this order; a line down or busy is skipped for the next


@dataclass(frozen=True, slots=True)
class RecordingView:
    call_id: str
    path: str  # relative to the recordings folder
    size: int
    seconds: float | None
    at: float
    from_number: str | None
    agent_id: str | None
    encrypted: bool = False


# --- commands (POST bodies) ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PutAgent:
    agent_id: str
    name: str
    queues: tuple[str, ...]
    password: str | None = None  # required when creating; None keeps the current one
    create: bool = False  # True refuses to overwrite an existing agent
    phone: str | None = None  # desk-phone extension ([sip] users); "" removes it; None keeps the current one


@dataclass(frozen=True, slots=True)
class DeleteAgent:
    agent_id: str


@dataclass(frozen=True, slots=True)
class SetPassword:
    agent_id: str
    password: str | None = None  # None: generate a new random password and return it


@dataclass(frozen=True, slots=True)
class PutQueue:
    queue_id: str
    name: str
    dispositions: tuple[str, ...] = ()
    ringback_s: float = 4.0
    create: bool = False


@dataclass(frozen=True, slots=True)
class DeleteQueue:
    queue_id: str


@dataclass(frozen=True, slots=True)
class SetMembers:
    queue_id: str
    agent_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineCommand:
    line_id: str
    action: str  # enable | disable | reset | test_sms | ussd
    number: str | None = None  # test_sms: destination
    text: str | None = None  # test_sms: body; ussd: the code (e.g. *100#)


@dataclass(frozen=True, slots=True)
class CallQuery:
    date_from: str | None = None  # YYYY-MM-DD, local time, inclusive
    date_to: str | None = None
    number: str | None = None  # substring of the caller's or dialled number
    agent_id: str | None = None
    with_recording: bool = False
    limit: int = 200


@dataclass(frozen=True, slots=True)
class GetCall:
    call_id: str


@dataclass(frozen=True, slots=True)
class GetDialPlan:
    pass


@dataclass(frozen=True, slots=True)
class RouteQuery:
    number: str  # a number as an agent would dial it


@dataclass(frozen=True, slots=True)
class MessageQuery:
    number: str


@dataclass(frozen=True, slots=True)
class ExportRecording:
    call_id: str
    path: str  # absolute destination file on the box


@dataclass(frozen=True, slots=True)
class DeleteRecording:
    call_id: str
    reason: str


# --- results -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class PasswordResult:
    ok: bool
    message: str
    password: str | None = None  # only when the box generated it


@dataclass(frozen=True, slots=True)
class CallList:
    calls: tuple[CallRecordView, ...]
    scanned: int  # how many stored records were searched


@dataclass(frozen=True, slots=True)
class CallDetail:
    call: CallRecordView | None
    messages: tuple[MessageView, ...] = ()  # SMS/chat with the same number
    segments: tuple[CallRecordView, ...] = ()  # every segment of the same customer call, in order (transfers)


@dataclass(frozen=True, slots=True)
class MessageList:
    messages: tuple[MessageView, ...]


@dataclass(frozen=True, slots=True)
class RecordingList:
    recordings: tuple[RecordingView, ...]


@dataclass(frozen=True, slots=True)
class ApiError:
    message: str


Event = Union[SiteSnapshot, AgentChanged, AgentRemoved, CallChanged, LineChanged, LineRemoved, QueueChanged, QueueRemoved,
              AlarmsChanged]

MESSAGE_TYPES: dict[str, type] = {
    "snapshot": SiteSnapshot,
    "agent": AgentChanged,
    "agent_removed": AgentRemoved,
    "call": CallChanged,
    "line": LineChanged,
    "line_removed": LineRemoved,
    "queue": QueueChanged,
    "queue_removed": QueueRemoved,
    "alarms": AlarmsChanged,
    "log": LogEntry,
    "put_agent": PutAgent,
    "delete_agent": DeleteAgent,
    "set_password": SetPassword,
    "put_queue": PutQueue,
    "delete_queue": DeleteQueue,
    "set_members": SetMembers,
    "line_command": LineCommand,
    "call_query": CallQuery,
    "get_call": GetCall,
    "get_dial_plan": GetDialPlan,
    "route_query": RouteQuery,
    "dial_plan": DialPlanView,
    "route_result": RouteResult,
    "message_query": MessageQuery,
    "export_recording": ExportRecording,
    "delete_recording": DeleteRecording,
    "result": CommandResult,
    "password_result": PasswordResult,
    "call_list": CallList,
    "call_detail": CallDetail,
    "message_list": MessageList,
    "recording_list": RecordingList,
    "error": ApiError,
}
TYPE_NAMES: dict[type, str] = {cls: name for name, cls in MESSAGE_TYPES.items()}


# --- the codec -----------------------------------------------------------------------------
def encode(obj: Any) -> dict[str, Any]:
    """A message dataclass -> ``{"v": 1, "type": ..., **fields}``."""
    name = TYPE_NAMES.get(type(obj))
    if name is None:
        raise SchemaError(f"{type(obj).__name__} is not an API message")
    doc = {"v": VERSION, "type": name}
    doc.update(_to_wire(obj))
    return doc


def decode(doc: Any, expect: type | tuple[type, ...] | None = None) -> Any:
    """``{"v": 1, "type": ...}`` -> the message dataclass; SchemaError on anything else."""
    if not isinstance(doc, dict):
        raise SchemaError("message must be a JSON object")
    if doc.get("v") != VERSION:
        raise SchemaError(f"unsupported message version {doc.get('v')!r} (this side speaks v{VERSION})")
    cls = MESSAGE_TYPES.get(doc.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise SchemaError(f"unknown message type {doc.get('type')!r}")
    if expect is not None and not issubclass(cls, expect):
        want = expect if isinstance(expect, tuple) else (expect,)
        raise SchemaError(f"expected {' or '.join(TYPE_NAMES[w] for w in want)}, got {doc['type']!r}")
    body = {k: v for k, v in doc.items() if k not in ("v", "type")}
    return _from_wire(cls, body, doc["type"])


def _to_wire(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_wire(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise SchemaError(f"cannot put {type(value).__name__} on the wire")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _from_wire(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_wire(arg, value, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if errors else f"{where}: unexpected null")
    if origin is tuple:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_from_wire(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise SchemaError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kwargs = {k: _from_wire(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            missing = [f.name for f in dataclasses.fields(tp) if f.name not in value
                       and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            raise SchemaError(f"{where}: missing field(s) {', '.join(missing) or exc}") from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SchemaError(f"{where}: expected a number, got {type(value).__name__}")
    if tp in (str, int, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise SchemaError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    raise SchemaError(f"{where}: unsupported type {tp!r}")
