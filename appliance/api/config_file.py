"""Writing admin changes (agents, queues) back to the box's TOML config file, atomically.

Only the ``[[queues]]`` and ``[[agents]]`` arrays are rewritten; every other section of the
file is kept as it was read (comments are not: tomli-w writes plain TOML). The new
document is validated with the same parser the box starts with before it replaces the
old file, so a change the box could not start on is never written.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from appliance.config import AgentConfig, QueueConfig, parse_config
from appliance.durable_file import replace_file


def agent_doc(agent: AgentConfig) -> dict[str, Any]:
    doc = {"id": agent.id, "name": agent.name, "password_hash": agent.password_hash, "queues": list(agent.queues)}
    if agent.phone:
        doc["phone"] = agent.phone
    return doc


def queue_doc(queue: QueueConfig) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": queue.id, "name": queue.name, "ringback_s": queue.ringback_s,
                           "dispositions": list(queue.dispositions)}
    if queue.hold_music:
        doc["hold_music"] = queue.hold_music
    return doc


def write_people(path: Path, queues: tuple[QueueConfig, ...], agents: tuple[AgentConfig, ...]) -> None:
    """Blocking (run it in an executor): replace queues and agents in ``path``; ConfigError if invalid."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raw = {}
    raw["queues"] = [queue_doc(q) for q in queues]
    raw["agents"] = [agent_doc(a) for a in agents]
    parse_config(raw)  # raises ConfigError: never write a file the box would refuse at start
    data = tomli_w.dumps(raw).encode("utf-8")
    replace_file(path, data, mode=0o600)  # it holds password hashes
