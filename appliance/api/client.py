"""``SocketClient``: the TUI's (and any local tool's) way to talk to the box's local API.

Every failure to reach the box becomes ``ApiUnavailable`` with one line an admin can act on.
"""
from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any, AsyncIterator, TypeVar

import aiohttp

from appliance.api import schema as s

T = TypeVar("T")

SOCKET_NAME = "api.sock"
TOKEN_NAME = "api.token"
CONNECT_TIMEOUT_S = 5.0  # a local socket answers in milliseconds; 5 s means the box is stuck
REQUEST_TIMEOUT_S = 60.0  # line commands may legitimately take 40 s on the box (USSD)
WS_HEARTBEAT_S = 20.0  # ping the box so a hung box is noticed by the TUI within ~40 s


class ApiUnavailable(Exception):
    """The box cannot be reached; ``str()`` is one line for the admin."""


class ApiCommandError(Exception):
    """The box refused a request as malformed (HTTP 400) or failed it."""


class SocketClient:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.socket_path = self.run_dir / SOCKET_NAME
        self.token_path = self.run_dir / TOKEN_NAME
        self._session: aiohttp.ClientSession | None = None

    # --- connection ----------------------------------------------------------------------------
    def _token(self) -> str:
        if not self.socket_path.exists():
            raise ApiUnavailable(f"the box is not running (no API socket at {self.socket_path})")
        if not os.access(self.socket_path, os.R_OK | os.W_OK):
            raise ApiUnavailable(f"cannot open {self.socket_path}: permission denied (run as the box's user or its admin group)")
        try:
            token = self.token_path.read_text().strip()
        except FileNotFoundError:
            raise ApiUnavailable(f"the box is not running (no API token at {self.token_path})") from None
        except PermissionError:
            raise ApiUnavailable(f"cannot read {self.token_path}: permission denied (run as the box's user)") from None
        if not token:
            raise ApiUnavailable(f"{self.token_path} is empty; restart the box")
        return token

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            token = self._token()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket_path)),
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            )
        return self._session

    async def close(self) -> None:
        """Drop the connection; the next request reconnects and re-reads the token (a restarted box has a new one)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> "SocketClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unavailable(self, exc: BaseException) -> ApiUnavailable:
        if isinstance(exc, ApiUnavailable):
            return exc
        os_err = getattr(exc, "os_error", None) or (exc if isinstance(exc, OSError) else None)
        code = getattr(os_err, "errno", None)
        if code in (errno.ECONNREFUSED, errno.ENOENT):
            return ApiUnavailable(f"the box is not running (stale API socket at {self.socket_path})")
        if code in (errno.EACCES, errno.EPERM):
            return ApiUnavailable(f"cannot open {self.socket_path}: permission denied (run as the box's user or its admin group)")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return ApiUnavailable(f"the box did not answer on {self.socket_path} within {CONNECT_TIMEOUT_S:.0f}s")
        return ApiUnavailable(f"lost the box's API at {self.socket_path}: {exc or type(exc).__name__}")

    # --- requests ------------------------------------------------------------------------------
    async def _get(self, path: str, expect: type[T]) -> T:
        try:
            async with self._ensure().get(f"http://box{path}") as resp:
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            await self.close()
            raise self._unavailable(exc) from None
        if resp.status == 401:
            await self.close()
        return self._result(resp.status, doc, expect)

    async def _post(self, path: str, message: Any, expect: type[T]) -> T:
        try:
            async with self._ensure().post(f"http://box{path}", json=s.encode(message)) as resp:
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            await self.close()
            raise self._unavailable(exc) from None
        if resp.status == 401:
            await self.close()
        return self._result(resp.status, doc, expect)

    async def post_raw(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        """POST a plain JSON body; returns the status and the message (for ``run.py sim``)."""
        try:
            async with self._ensure().post(f"http://box{path}", json=body) as resp:
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            await self.close()
            raise self._unavailable(exc) from None
        if resp.status == 401:
            raise ApiUnavailable(f"the box refused the API token in {self.token_path}")
        return resp.status, str(doc.get("message", doc) if isinstance(doc, dict) else doc)

    def _result(self, status: int, doc: Any, expect: type[T]) -> T:
        if status == 401:
            raise ApiUnavailable(f"the box refused the API token in {self.token_path}")
        msg = s.decode(doc)
        if isinstance(msg, s.ApiError):
            raise ApiCommandError(msg.message)
        if not isinstance(msg, expect):
            raise ApiCommandError(f"unexpected answer {type(msg).__name__} from the box")
        return msg

    async def snapshot(self) -> s.SiteSnapshot:
        return await self._get("/v1/snapshot", s.SiteSnapshot)

    async def events(self) -> AsyncIterator[s.Event]:
        """One stream: a snapshot, then deltas. Ends with ApiUnavailable when the box goes away."""
        ws = await self._ws("http://box/v1/events")
        async with ws:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                yield s.decode(msg.json(), (s.SiteSnapshot, s.AgentChanged, s.AgentRemoved, s.CallChanged,
                                            s.LineChanged, s.LineRemoved, s.QueueChanged, s.QueueRemoved, s.AlarmsChanged))
        await self.close()
        raise ApiUnavailable("the box closed the event stream")

    async def logs(self, level: str = "DEBUG") -> AsyncIterator[s.LogEntry]:
        ws = await self._ws(f"http://box/v1/logs?level={level}")
        async with ws:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                yield s.decode(msg.json(), s.LogEntry)
        await self.close()
        raise ApiUnavailable("the box closed the log stream")

    async def _ws(self, url: str) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self._ensure().ws_connect(url, heartbeat=WS_HEARTBEAT_S)
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status == 401:
                raise ApiUnavailable(f"the box refused the API token in {self.token_path}") from None
            raise self._unavailable(exc) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise self._unavailable(exc) from None

    # --- commands ------------------------------------------------------------------------------
    async def put_agent(self, cmd: s.PutAgent) -> s.CommandResult:
        return await self._post("/v1/put_agent", cmd, s.CommandResult)

    async def delete_agent(self, agent_id: str) -> s.CommandResult:
        return await self._post("/v1/delete_agent", s.DeleteAgent(agent_id), s.CommandResult)

    async def set_password(self, agent_id: str, password: str | None = None) -> s.PasswordResult:
        return await self._post("/v1/set_password", s.SetPassword(agent_id, password), s.PasswordResult)

    async def put_queue(self, cmd: s.PutQueue) -> s.CommandResult:
        return await self._post("/v1/put_queue", cmd, s.CommandResult)

    async def delete_queue(self, queue_id: str) -> s.CommandResult:
        return await self._post("/v1/delete_queue", s.DeleteQueue(queue_id), s.CommandResult)

    async def set_members(self, queue_id: str, agent_ids: tuple[str, ...]) -> s.CommandResult:
        return await self._post("/v1/set_members", s.SetMembers(queue_id, agent_ids), s.CommandResult)

    async def line_command(self, cmd: s.LineCommand) -> s.CommandResult:
        return await self._post("/v1/line_command", cmd, s.CommandResult)

    async def dial_plan(self) -> s.DialPlanView:
        return await self._post("/v1/dial_plan", s.GetDialPlan(), s.DialPlanView)

    async def route(self, number: str) -> s.RouteResult:
        """Which dial plan rule and lines the box would use for ``number`` (nothing is dialled)."""
        return await self._post("/v1/route", s.RouteQuery(number), s.RouteResult)

    async def search_calls(self, q: s.CallQuery) -> s.CallList:
        return await self._post("/v1/calls", q, s.CallList)

    async def get_call(self, call_id: str) -> s.CallDetail:
        return await self._post("/v1/call", s.GetCall(call_id), s.CallDetail)

    async def messages(self, number: str) -> s.MessageList:
        return await self._post("/v1/messages", s.MessageQuery(number), s.MessageList)

    async def recordings(self, q: s.CallQuery) -> s.RecordingList:
        return await self._post("/v1/recordings", q, s.RecordingList)

    async def export_recording(self, call_id: str, path: str) -> s.CommandResult:
        return await self._post("/v1/export_recording", s.ExportRecording(call_id, path), s.CommandResult)

    async def delete_recording(self, call_id: str, reason: str) -> s.CommandResult:
        return await self._post("/v1/delete_recording", s.DeleteRecording(call_id, reason), s.CommandResult)
