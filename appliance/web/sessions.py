"""Logged-in agents: tokens, their console sockets and their WebRTC media legs."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field

from media.frames import LegAudio
from media.webrtc import AgentMediaSession

log = logging.getLogger(__name__)

LOGIN_FAILURE_WINDOW_S = 300.0  # failed logins are counted over this window per source address
LOGIN_FAILURE_LIMIT = 10  # then that address must wait for the window to pass
WS_CLOSE_REVOKED = 4003  # the console shows the reason and the log-in form
MEDIA_CLOSE_TIMEOUT_S = 5.0  # closing a peer connection (DTLS/ICE teardown) must not hang the console


@dataclass(eq=False)
class AgentSession:
    agent_id: str
    token: str
    created: float
    media: AgentMediaSession | None = None
    sockets: set = field(default_factory=set)
    tasks: set = field(default_factory=set)


class Sessions:
    def __init__(self) -> None:
        self._by_token: dict[str, AgentSession] = {}
        self._by_agent: dict[str, AgentSession] = {}
        self._failures: dict[str, list[float]] = {}
        self._media_changed = asyncio.Condition()

    # --- login --------------------------------------------------------------------------
    def login_wait(self, source: str) -> float:
        """Seconds before ``source`` may try to log in again (0: now)."""
        now = time.monotonic()
        recent = [t for t in self._failures.get(source, []) if now - t < LOGIN_FAILURE_WINDOW_S]
        self._failures[source] = recent
        if len(recent) < LOGIN_FAILURE_LIMIT:
            return 0.0
        return recent[-LOGIN_FAILURE_LIMIT] + LOGIN_FAILURE_WINDOW_S - now

    def login_failed(self, source: str) -> bool:
        """Count a failed log-in; True when it is the one that locks ``source`` out."""
        self._failures.setdefault(source, []).append(time.monotonic())
        return self.login_wait(source) > 0

    def create(self, agent_id: str) -> tuple[AgentSession, AgentSession | None]:
        """A new session for the agent; returns it and the session it replaces, if any."""
        old = self._by_agent.pop(agent_id, None)
        if old is not None:
            self._by_token.pop(old.token, None)
        session = AgentSession(agent_id, secrets.token_urlsafe(24), time.time())
        self._by_token[session.token] = session
        self._by_agent[agent_id] = session
        return session, old

    def by_token(self, token: str | None) -> AgentSession | None:
        return self._by_token.get(token or "")

    def by_agent(self, agent_id: str) -> AgentSession | None:
        return self._by_agent.get(agent_id)

    def drop(self, session: AgentSession) -> None:
        if self._by_token.get(session.token) is session:
            del self._by_token[session.token]
        if self._by_agent.get(session.agent_id) is session:
            del self._by_agent[session.agent_id]

    async def revoke(self, agent_id: str, why: str) -> bool:
        """End the agent's console log-in now (password changed, agent deleted): its token stops
        working and its pages are told why (WebSocket close 4003). A call in progress goes on
        until the box notices the agent's audio is gone (the caller is held, then the call ends)."""
        session = self._by_agent.get(agent_id)
        if session is None:
            return False
        self.drop(session)
        for ws in list(session.sockets):
            await ws.close(code=WS_CLOSE_REVOKED, message=why.encode()[:120])
        if session.media is not None:
            media, session.media = session.media, None
            await self.close_media(media)
        log.info("console log-in of agent %s ended: %s", agent_id, why)
        return True

    def all(self) -> list[AgentSession]:
        return list(self._by_agent.values())

    # --- media ----------------------------------------------------------------------------
    def media_for(self, agent_id: str) -> LegAudio | None:
        session = self._by_agent.get(agent_id)
        media = session.media if session is not None else None
        if media is None or not media.connected.is_set() or media.ended.is_set():
            return None
        return media

    async def new_media(self, session: AgentSession, sdp: str, kind: str) -> tuple[str, str]:
        old, session.media = session.media, AgentMediaSession(name=f"agent:{session.agent_id}")
        if old is not None:
            await self.close_media(old)
        answer = await session.media.answer(sdp, kind)
        async with self._media_changed:
            self._media_changed.notify_all()
        return answer

    async def wait_reconnected(self, agent_id: str, old: LegAudio, timeout: float) -> LegAudio | None:
        """A new, connected audio leg of the agent (after a drop or a page reload), or None."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    session = self._by_agent.get(agent_id)
                    media = session.media if session is not None else None
                    if media is not None and media is not old and not media.ended.is_set():
                        await media.connected.wait()
                        return media
                    async with self._media_changed:
                        await self._media_changed.wait()
        except TimeoutError:
            return None

    async def close_media(self, media: AgentMediaSession) -> None:
        try:
            async with asyncio.timeout(MEDIA_CLOSE_TIMEOUT_S):
                await media.close()
        except TimeoutError:
            log.warning("%s: peer connection did not close within %.0fs", media.name, MEDIA_CLOSE_TIMEOUT_S)

    async def close_all(self) -> None:
        for session in self.all():
            if session.media is not None:
                await self.close_media(session.media)
                session.media = None
