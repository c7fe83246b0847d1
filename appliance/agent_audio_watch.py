"""A conversation's watch on the agent's audio: a browser whose WebRTC leg drops has the caller
held with music while the console reconnects by itself (``[acd] agent_reconnect_s``); no
reconnection in time ends the call as an agent hang-up. A mixin of ``Conversation``: it runs
in the call's task, and the watchers only ``post`` into the call's inbox."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from appliance.lines import HangupCause
from appliance.transfer import Phase
from media.frames import LegAudio
from media.tones import HoldMusic

log = logging.getLogger("appliance.conversation")


@dataclass(frozen=True, slots=True)
class LegLost:
    agent_id: str
    leg: LegAudio


@dataclass(frozen=True, slots=True)
class LegBack:
    agent_id: str
    leg: LegAudio | None  # None: the console did not reconnect in time


class AgentAudioWatch:
    # provided by Conversation
    call_id: str
    svc: Any
    bridge: Any
    transfers: Any
    hold: Any
    owner: str | None
    _watch: asyncio.Task[None] | None

    def post(self, msg: object) -> None: ...
    def _spawn(self, coro, name: str) -> asyncio.Task[None]: ...  # type: ignore[no-untyped-def]

    def _watch_leg(self, agent_id: str, leg: LegAudio) -> None:
        self._stop_watch()
        ended = getattr(leg, "ended", None)
        if isinstance(ended, asyncio.Event):
            self._watch = self._spawn(self._wait_leg(agent_id, leg, ended), f"agent-audio:{self.call_id}")

    async def _wait_leg(self, agent_id: str, leg: LegAudio, ended: asyncio.Event) -> None:
        await ended.wait()
        self.post(LegLost(agent_id, leg))

    def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    def _leg_lost(self, msg: LegLost) -> None:
        if self.transfers.phase is not Phase.TALKING or msg.agent_id != self.owner or self.bridge.agent is not msg.leg:
            return
        wait_s = self.svc.cfg.acd.agent_reconnect_s
        log.warning("call %s: agent %s lost audio; caller on hold for up to %.0fs while the console reconnects",
                    self.call_id, msg.agent_id, wait_s)
        self.bridge.hold(HoldMusic())
        self._spawn(self._reconnect(msg.agent_id, msg.leg, wait_s), f"agent-reconnect:{self.call_id}")

    async def _reconnect(self, agent_id: str, old: LegAudio, wait_s: float) -> None:
        self.post(LegBack(agent_id, await self.svc.agents.wait_reconnected(agent_id, old, wait_s)))

    def _leg_back(self, msg: LegBack) -> HangupCause | None:
        if self.transfers.phase is not Phase.TALKING or msg.agent_id != self.owner:
            return None
        if msg.leg is None:
            log.warning("call %s: agent %s did not reconnect; ending the call", self.call_id, msg.agent_id)
            return HangupCause.AGENT_HUNG_UP
        self.bridge.replace_agent(msg.leg)
        if not self.hold.held:  # the agent had put the caller on hold: the music goes on
            self.bridge.unhold()
        self._watch_leg(msg.agent_id, msg.leg)
        log.info("call %s: agent %s audio reconnected", self.call_id, msg.agent_id)
        return None
