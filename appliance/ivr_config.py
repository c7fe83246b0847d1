"""``[[inbound]]`` routes and ``[[menus]]`` (IVR) from the config file, validated at load.

Inbound rules are tried in order; the first that matches a call decides where it goes:
``called`` is a regular expression over the whole called number or SIP user (empty when
the line does not tell), ``line`` a line id, a line kind ("sip", "gsm", "analog") or a
glob ("gsm:*"). A rule names exactly one of ``queue`` or ``menu``. No rule matching (or
no rules at all) sends the call to the first queue.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable

from appliance.ivr import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, KEYS, MenuConfig, Target, TargetKind, parse_target

INBOUND_KEYS = frozenset({"called", "line", "queue", "menu", "name"})
MENU_KEYS = frozenset({"id", "prompt", "options", "timeout_s", "retries", "invalid_prompt", "default"})
MAX_TIMEOUT_S = 60.0  # a longer silence is a broken menu, not a patient caller
MAX_RETRIES = 10


class IvrConfigError(ValueError):
    """An [[inbound]] rule or a [[menus]] entry cannot be used; the message names it and the key."""


@dataclass(frozen=True, slots=True)
class InboundRule:
    target: Target  # a queue or a menu
    called: str = ""  # regular expression over the whole called number/user; empty = any
    line: str = ""  # line id, kind or glob; empty = any
    name: str = ""

    def matches(self, called: str | None, line_id: str) -> bool:
        if self.called and re.fullmatch(self.called, called or "") is None:
            return False
        return not self.line or line_matches(self.line, line_id)


def line_matches(pattern: str, line_id: str) -> bool:
    """"sip" matches "sip"; "gsm" matches every "gsm:..." line; globs as in ``fnmatch``."""
    return fnmatchcase(line_id, pattern) or (":" not in pattern and line_id.startswith(pattern + ":"))


def route(rules: Iterable[InboundRule], called: str | None, line_id: str) -> InboundRule | None:
    """The first rule matching the call, or None (then the first queue takes it)."""
    return next((r for r in rules if r.matches(called, line_id)), None)


def parse_inbound(items: list[dict[str, Any]], queue_ids: set[str], menu_ids: set[str]) -> tuple[InboundRule, ...]:
    rules = []
    for no, item in enumerate(items, 1):
        label = f"[[inbound]] rule {no}" + (f" ({item['name']})" if item.get("name") else "")
        _no_unknown(label, item, INBOUND_KEYS)
        called, line = item.get("called", ""), item.get("line", "")
        if not isinstance(called, str):
            raise IvrConfigError(f"{label}: called must be a string (a regular expression such as \"sales|2\\\\d\\\\d\")")
        try:
            re.compile(called)
        except re.error as exc:
            raise IvrConfigError(f"{label}: called {called!r} is not a valid regular expression ({exc})") from None
        if not isinstance(line, str):
            raise IvrConfigError(f'{label}: line must be a string such as "sip", "gsm:*" or "analog:0"')
        if line and not _names_a_line_kind(line):
            raise IvrConfigError(f'{label}: line {line!r} can match no line: start it with a kind ("sip", "gsm", '
                                 '"analog"), e.g. "gsm", "gsm:*" or "analog:0"')
        targets = [k for k in ("queue", "menu") if k in item]
        if len(targets) != 1:
            raise IvrConfigError(f"{label} needs exactly one of queue = \"<queue id>\" or menu = \"<menu id>\"")
        kind = targets[0]
        target = _target(f"{label}: {kind}", f"{kind}:{item[kind]}" if isinstance(item[kind], str) else item[kind],
                         queue_ids, menu_ids)
        rules.append(InboundRule(target, called, line, str(item.get("name", ""))))
    return tuple(rules)


INBOUND_LINE_KINDS = ("sip", "gsm", "analog")  # the line ids calls arrive on: "sip", "gsm:<IMEI>", "analog:<n>"


def _names_a_line_kind(pattern: str) -> bool:
    """A typo such as "gsmm" would silently never match: the part before ":" must be a kind (or a glob)."""
    kind = pattern.split(":", 1)[0]
    if kind in INBOUND_LINE_KINDS:
        return True
    return any(ch in kind for ch in "*?[") and any(fnmatchcase(k, kind) for k in INBOUND_LINE_KINDS)


def parse_menus(items: list[dict[str, Any]], queue_ids: set[str]) -> tuple[MenuConfig, ...]:
    ids = [m.get("id") for m in items]
    for no, (item, menu_id) in enumerate(zip(items, ids), 1):
        if not isinstance(menu_id, str) or not menu_id:
            raise IvrConfigError(f"[[menus]] entry {no} needs an id (a string)")
        if ids.count(menu_id) > 1:
            raise IvrConfigError(f"two [[menus]] share the id {menu_id!r}")
    menu_ids = set(ids)
    menus = tuple(_menu(item, queue_ids, menu_ids) for item in items)
    _check_default_loops(menus)
    return menus


def _menu(item: dict[str, Any], queue_ids: set[str], menu_ids: set[str]) -> MenuConfig:
    label = f"menu {item['id']}"
    _no_unknown(label, item, MENU_KEYS)
    for key in ("prompt", "invalid_prompt"):
        if not isinstance(item.get(key, ""), str):
            raise IvrConfigError(f"{label}: {key} must be a path to a WAV file (a string)")
    timeout = item.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise IvrConfigError(f"{label}: timeout_s must be a number of seconds > 0 and <= {MAX_TIMEOUT_S:.0f}")
    retries = item.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise IvrConfigError(f"{label}: retries must be a whole number from 0 to {MAX_RETRIES}")
    raw_options = item.get("options", {})
    if not isinstance(raw_options, dict) or not raw_options:
        raise IvrConfigError(f'{label}: options must be a table of keys to targets, e.g. options = {{ "1" = "queue:sales" }}')
    options = []
    for key, text in raw_options.items():
        if key not in KEYS:
            raise IvrConfigError(f"{label}: option key {key!r} must be one of 0-9, * or # (quote it: \"1\" = ...)")
        options.append((key, _target(f"{label}: option {key!r}", text, queue_ids, menu_ids)))
    default = None
    if "default" in item:
        default = _target(f"{label}: default", item["default"], queue_ids, menu_ids)
        if default.kind is TargetKind.REPEAT:
            raise IvrConfigError(f'{label}: default cannot be "repeat" (the caller would never leave); use a queue, a menu or "hangup"')
    return MenuConfig(id=item["id"], prompt=item.get("prompt", ""), options=tuple(options), timeout_s=float(timeout),
                      retries=retries, invalid_prompt=item.get("invalid_prompt", ""), default=default)


def _target(label: str, text: object, queue_ids: set[str], menu_ids: set[str]) -> Target:
    try:
        target = parse_target(text)
    except ValueError as exc:
        raise IvrConfigError(f"{label} {exc}") from None
    if target.kind is TargetKind.QUEUE and target.id not in queue_ids:
        raise IvrConfigError(f"{label} names unknown queue {target.id!r} (queues: {', '.join(sorted(queue_ids))})")
    if target.kind is TargetKind.MENU and target.id not in menu_ids:
        known = ", ".join(sorted(menu_ids)) or "none are configured"
        raise IvrConfigError(f"{label} names unknown menu {target.id!r} (menus: {known})")
    return target


def _check_default_loops(menus: tuple[MenuConfig, ...]) -> None:
    """Menus may link to each other, but a caller who presses nothing must leave eventually."""
    by_id = {m.id: m for m in menus}
    for menu in menus:
        seen = [menu.id]
        nxt = menu.default
        while nxt is not None and nxt.kind is TargetKind.MENU:
            if nxt.id in seen:
                chain = " -> ".join(seen + [nxt.id])
                raise IvrConfigError(f"menu {menu.id}: the defaults {chain} form a loop; a caller who presses "
                                     "nothing would never leave (end one with a queue or \"hangup\")")
            seen.append(nxt.id)
            nxt = by_id[nxt.id].default


def _no_unknown(label: str, item: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise IvrConfigError(f"{label} has unknown key(s): {', '.join(sorted(unknown))}")
