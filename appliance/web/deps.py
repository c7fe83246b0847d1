"""What the agent console needs from the rest of the box (wired in ``appliance/app.py``)."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from appliance.acd.router import Acd
from appliance.agent_devices import AgentDevices
from appliance.config import AgentConfig, QueueConfig
from appliance.hub import Hub
from appliance.messaging import MessageCenter
from appliance.transfer_requests import TransferOps
from appliance.web.sessions import Sessions


class ConsoleDeps:
    """What the console needs from the rest of the box; wired in appliance/app.py."""

    def __init__(
        self,
        *,
        acd: Acd,
        hub: Hub,
        sessions: Sessions,
        agent_config: Callable[[str], AgentConfig | None],
        queues: Callable[[], tuple[QueueConfig, ...]],
        hangup: Callable[[str], bool],
        live_calls: Callable[[], list],
        messages: MessageCenter | None = None,
        conversations: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
        devices: AgentDevices | None = None,
        dial: Callable[[str, str], str] | None = None,
        transfers: TransferOps | None = None,
        hold: Callable[[str, bool], bool] | None = None,
        keys: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.acd = acd
        self.hub = hub
        self.sessions = sessions
        self.agent_config = agent_config
        self.queues = queues
        self.hangup = hangup
        self.live_calls = live_calls
        self.messages = messages
        self.conversations = conversations
        self.devices = devices  # browser audio or desk phone, per agent
        self.dial = dial  # (agent id, number) -> call id; raises OutboundError
        self.transfers = transfers  # blind/attended transfer of the agent's inbound call
        self.hold = hold  # (agent id, on) -> False when the agent has no answered call; raises ControlError
        self.keys = keys  # (agent id, digits) -> False when the agent has no answered call; raises ControlError
        self.logout_timers: dict[str, asyncio.TimerHandle] = {}
