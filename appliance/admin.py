"""The site-admin facade: what the local API may read from and do to a running ``Box``.

Reads come from the live box (ACD, call centre, lines via ``SiteFeed``) and the store.
Changes to agents and queues are validated, written to the config file atomically and
then applied to the running box at once: no restart, no effect on calls in progress.
"""
from __future__ import annotations

import asyncio
import logging
import re
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.agent_devices import DeviceError
from appliance.api import schema as s
from appliance.api.archive import Archive
from appliance.api.config_file import write_people
from appliance.api.feed import SiteFeed
from appliance.api.routing import dial_plan_view, route_number
from appliance.api.views import LINE_ACTIONS
from appliance.config import AgentConfig, ConfigError, QueueConfig, hash_password

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")  # ids appear in URLs, file names and logs
MIN_PASSWORD = 8
GENERATED_PASSWORD_BYTES = 9  # token_urlsafe(9): 12 characters, 72 bits: readable over the phone
LINE_COMMAND_TIMEOUT_S = 40.0  # a USSD balance query on a slow network can take ~30 s to answer
CONFIG_WRITE_TIMEOUT_S = 30.0  # writing a few kB with fsync; an SD card mid garbage-collection stalls seconds


class Admin:
    def __init__(self, box: Any, config_path: Path, feed: SiteFeed) -> None:
        self.box = box
        self.config_path = config_path
        self.feed = feed
        self.archive = Archive(box)  # stored calls, messages and recordings
        self._edit = asyncio.Lock()  # one config change at a time, across every connected admin

    # --- reads -------------------------------------------------------------------------------
    def box_info(self) -> s.BoxInfo:
        ep = self.box.endpoints
        return s.BoxInfo(
            branch=self.box.cfg.branch, pid=os.getpid(), started_at=self.box.started_at,
            web_url=ep.web_url if ep else "", sip_udp=ep.sip_udp if ep else None,
            sip_tcp=ep.sip_tcp if ep else None, config_path=str(self.config_path),
            extensions=_extensions(self.box.cfg),
        )

    def snapshot(self) -> s.SiteSnapshot:
        return self.feed.snapshot(self.box_info())

    # --- agents ------------------------------------------------------------------------------
    async def put_agent(self, cmd: s.PutAgent, actor: str) -> s.CommandResult:
        async with self._edit:
            cfg = self.box.cfg
            old = self.box.agent_config(cmd.agent_id)
            problem = _check_id(cmd.agent_id, "agent") or _check_name(cmd.name)
            queue_ids = {q.id for q in cfg.queues}
            unknown = sorted(set(cmd.queues) - queue_ids)
            if problem is None and unknown:
                problem = f"unknown queue(s): {', '.join(unknown)}"
            if problem is None and cmd.create and old is not None:
                problem = f"agent {cmd.agent_id} already exists"
            if problem is None and old is None and not cmd.password:
                problem = "a new agent needs a password"
            if problem is None and cmd.password is not None:
                problem = _check_password(cmd.password)
            old_phone = old.phone if old else ""
            phone = old_phone if cmd.phone is None else cmd.phone.strip()
            if problem is None and phone != old_phone:
                problem = self._phone_problem(cmd.agent_id, phone)
            if problem:
                return s.CommandResult(False, problem)
            pw_hash = await _hash(cmd.password) if cmd.password else old.password_hash
            agent = AgentConfig(id=cmd.agent_id, name=cmd.name.strip(), password_hash=pw_hash,
                                queues=tuple(dict.fromkeys(cmd.queues)), phone=phone)
            agents = _replace_by_id(self._agents(), agent)
            if (err := await self._save(cfg.queues, agents)) is not None:
                return s.CommandResult(False, err)
            self.box.put_agent(agent)
            if phone != old_phone:
                self._phone_changed(agent.id, phone)
            verb = "created" if old is None else "changed"
            log.info("agent %s %s by %s%s", agent.id, verb, actor,
                     f" (desk phone {phone or 'removed'})" if phone != old_phone else "")
            return s.CommandResult(True, f"agent {agent.id} {verb}")

    def _phone_problem(self, agent_id: str, phone: str) -> str | None:
        """Why ``phone`` cannot become the agent's desk phone now, or None."""
        extensions = _extensions(self.box.cfg)
        if phone and phone not in extensions:
            return (f"extension {phone} is not a desk phone of this box "
                    f"([sip] users: {', '.join(extensions) or 'none configured'})")
        devices = getattr(self.box, "devices", None)
        if devices is not None and self.box.acd is not None and str(devices.device(agent_id)) == "phone":
            snap = next((a for a in self.box.acd.agents() if a.agent_id == agent_id), None)
            if snap is not None and str(snap.state) in ("on_call", "reserved"):
                return f"agent {agent_id} is on a call on the desk phone; change it after the call"
        return None

    def _phone_changed(self, agent_id: str, phone: str) -> None:
        """An agent whose desk phone was removed takes calls in the browser again; the admin sees it at once."""
        devices = getattr(self.box, "devices", None)
        if devices is not None and not phone and str(devices.device(agent_id)) == "phone":
            try:
                devices.set_device(agent_id, "browser")
            except DeviceError as exc:  # the agent got a call meanwhile; the console shows the problem
                log.warning("agent %s keeps the desk phone device after its removal: %s", agent_id, exc)
        self.feed.refresh_devices()

    async def delete_agent(self, cmd: s.DeleteAgent, actor: str) -> s.CommandResult:
        async with self._edit:
            if self.box.agent_config(cmd.agent_id) is None:
                return s.CommandResult(False, f"no agent {cmd.agent_id}")
            snap = next((a for a in self.box.acd.agents() if a.agent_id == cmd.agent_id), None)
            if snap is not None and str(snap.state) in ("on_call", "reserved"):
                return s.CommandResult(False, f"agent {cmd.agent_id} is on a call; delete after it ends")
            agents = tuple(a for a in self._agents() if a.id != cmd.agent_id)
            if (err := await self._save(self.box.cfg.queues, agents)) is not None:
                return s.CommandResult(False, err)
            self.box.remove_agent(cmd.agent_id)
            await self.box.revoke_console(cmd.agent_id, "this agent was removed by the site admin")
            self.feed.publish(s.AgentRemoved(cmd.agent_id))
            log.info("agent %s deleted by %s", cmd.agent_id, actor)
            return s.CommandResult(True, f"agent {cmd.agent_id} deleted")

    async def set_password(self, cmd: s.SetPassword, actor: str) -> s.PasswordResult:
        async with self._edit:
            old = self.box.agent_config(cmd.agent_id)
            if old is None:
                return s.PasswordResult(False, f"no agent {cmd.agent_id}")
            generated = cmd.password is None
            password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES) if generated else cmd.password
            if (problem := _check_password(password)) is not None:
                return s.PasswordResult(False, problem)
            agent = replace(old, password_hash=await _hash(password), demo_password=None)
            if (err := await self._save(self.box.cfg.queues, _replace_by_id(self._agents(), agent))) is not None:
                return s.PasswordResult(False, err)
            self.box.put_agent(agent)
            log.info("password of agent %s %s by %s", agent.id, "reset" if generated else "set", actor)
            await self.box.revoke_console(agent.id, "your password was changed by the site admin")
            return s.PasswordResult(True, f"password of {agent.id} {'reset' if generated else 'set'}",
                                    password if generated else None)

    # --- queues ------------------------------------------------------------------------------
    async def put_queue(self, cmd: s.PutQueue, actor: str) -> s.CommandResult:
        async with self._edit:
            queues = self.box.cfg.queues
            old = next((q for q in queues if q.id == cmd.queue_id), None)
            problem = _check_id(cmd.queue_id, "queue") or _check_name(cmd.name)
            if problem is None and cmd.create and old is not None:
                problem = f"queue {cmd.queue_id} already exists"
            if problem is None and not (0.0 <= cmd.ringback_s <= 60.0):
                problem = "ringback must be between 0 and 60 seconds"
            dispositions = tuple(d.strip() for d in cmd.dispositions if d.strip())
            if problem is None and not dispositions:
                problem = "a queue needs at least one disposition"
            if problem:
                return s.CommandResult(False, problem)
            base = old or QueueConfig(id=cmd.queue_id, name=cmd.name)
            queue = replace(base, name=cmd.name.strip(), dispositions=dispositions, ringback_s=float(cmd.ringback_s))
            new_queues = _replace_by_id(queues, queue)
            if (err := await self._save(new_queues, self._agents())) is not None:
                return s.CommandResult(False, err)
            self.box.cfg = replace(self.box.cfg, queues=new_queues)
            live = True
            if old is None:
                add_queue = getattr(self.box.acd, "add_queue", None)
                if callable(add_queue):
                    add_queue(queue.id)
                else:
                    live = False
            self.feed.publish(s.QueueChanged(self.feed.queue_view(queue)))
            log.info("queue %s %s by %s", queue.id, "created" if old is None else "changed", actor)
            note = "" if live else "; calls are routed to it after the next restart"
            return s.CommandResult(True, f"queue {queue.id} {'created' if old is None else 'changed'}{note}")

    async def delete_queue(self, cmd: s.DeleteQueue, actor: str) -> s.CommandResult:
        async with self._edit:
            queues = self.box.cfg.queues
            if not any(q.id == cmd.queue_id for q in queues):
                return s.CommandResult(False, f"no queue {cmd.queue_id}")
            if queues[0].id == cmd.queue_id:
                return s.CommandResult(False, f"queue {cmd.queue_id} takes the inbound calls; it cannot be deleted")
            members = [a.id for a in self._agents() if cmd.queue_id in a.queues]
            if members:
                return s.CommandResult(False, f"queue {cmd.queue_id} still has members ({', '.join(members)}); remove them first")
            if self.box.acd is not None and self.box.acd.waiting(cmd.queue_id):
                return s.CommandResult(False, f"calls are waiting in {cmd.queue_id}")
            new_queues = tuple(q for q in queues if q.id != cmd.queue_id)
            if (err := await self._save(new_queues, self._agents())) is not None:
                return s.CommandResult(False, err)
            self.box.cfg = replace(self.box.cfg, queues=new_queues)
            self.feed.publish(s.QueueRemoved(cmd.queue_id))
            log.info("queue %s deleted by %s", cmd.queue_id, actor)
            return s.CommandResult(True, f"queue {cmd.queue_id} deleted")

    async def set_members(self, cmd: s.SetMembers, actor: str) -> s.CommandResult:
        async with self._edit:
            if not any(q.id == cmd.queue_id for q in self.box.cfg.queues):
                return s.CommandResult(False, f"no queue {cmd.queue_id}")
            known = {a.id for a in self._agents()}
            unknown = sorted(set(cmd.agent_ids) - known)
            if unknown:
                return s.CommandResult(False, f"unknown agent(s): {', '.join(unknown)}")
            wanted = set(cmd.agent_ids)
            changed = []
            agents = []
            for a in self._agents():
                queues = a.queues
                if a.id in wanted and cmd.queue_id not in queues:
                    queues = queues + (cmd.queue_id,)
                elif a.id not in wanted and cmd.queue_id in queues:
                    queues = tuple(q for q in queues if q != cmd.queue_id)
                if queues != a.queues:
                    a = replace(a, queues=queues)
                    changed.append(a)
                agents.append(a)
            if not changed:
                return s.CommandResult(True, f"members of {cmd.queue_id} unchanged")
            if (err := await self._save(self.box.cfg.queues, tuple(agents))) is not None:
                return s.CommandResult(False, err)
            for a in changed:
                self.box.put_agent(a)
            log.info("members of queue %s set to %s by %s", cmd.queue_id, ", ".join(sorted(wanted)) or "nobody", actor)
            return s.CommandResult(True, f"members of {cmd.queue_id}: {', '.join(sorted(wanted)) or 'none'}")

    # --- dial plan ---------------------------------------------------------------------------
    def dial_plan(self) -> s.DialPlanView:
        return dial_plan_view(self.box)

    def route(self, q: s.RouteQuery) -> s.RouteResult:
        return route_number(self.box, self.feed.line_views(), q.number)

    # --- lines -------------------------------------------------------------------------------
    async def line_command(self, cmd: s.LineCommand, actor: str) -> s.CommandResult:
        method_name = LINE_ACTIONS.get(cmd.action)
        if method_name is None:
            return s.CommandResult(False, f"unknown line action {cmd.action!r}")
        driver = self.feed.driver(cmd.line_id)
        if driver is None:
            return s.CommandResult(False, f"line {cmd.line_id} is not running on this box")
        method = getattr(driver, method_name, None)
        if not callable(method):
            return s.CommandResult(False, f"{cmd.action.replace('_', ' ')} is not available on line {cmd.line_id}")
        if cmd.action == "test_sms":
            if not cmd.number or not re.fullmatch(r"\+?[0-9]{3,20}", cmd.number):
                return s.CommandResult(False, "give the destination as digits, optionally starting with +")
            args: tuple[Any, ...] = (cmd.number, cmd.text or "Branchline test message")
        elif cmd.action == "ussd":
            if not cmd.text or not re.fullmatch(r"[0-9*#]{2,32}", cmd.text):
                return s.CommandResult(False, "give a USSD code such as *100#")
            args = (cmd.text,)
        else:
            args = ()
        log.info("line %s: %s requested by %s", cmd.line_id, cmd.action, actor)
        try:
            async with asyncio.timeout(LINE_COMMAND_TIMEOUT_S):
                answer = await _maybe_await(method(*args))
        except TimeoutError:
            return s.CommandResult(False, f"line {cmd.line_id} did not answer {cmd.action} within {LINE_COMMAND_TIMEOUT_S:.0f}s")
        except Exception as exc:
            return s.CommandResult(False, f"{cmd.action} on {cmd.line_id} failed: {exc}")
        text = answer if isinstance(answer, str) else getattr(answer, "text", None)  # UssdReply.text
        detail = f": {text}" if text else ""
        return s.CommandResult(True, f"{cmd.action.replace('_', ' ')} done on {cmd.line_id}{detail}")

    # --- helpers -------------------------------------------------------------------------------
    def _agents(self) -> tuple[AgentConfig, ...]:
        """Agent configs as the box knows them now (the ACD order, then any not yet in it)."""
        ids = [a.agent_id for a in self.box.acd.agents()] if self.box.acd is not None else []
        ids += [a.id for a in self.box.cfg.agents if a.id not in ids]
        return tuple(a for a in (self.box.agent_config(i) for i in ids) if a is not None)

    async def _save(self, queues: tuple[QueueConfig, ...], agents: tuple[AgentConfig, ...]) -> str | None:
        """Write the file; on success also keep ``box.cfg`` in step. Returns an error text or None."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONFIG_WRITE_TIMEOUT_S):
                await loop.run_in_executor(None, write_people, self.config_path, queues, agents)
        except ConfigError as exc:
            return f"refused: {exc}"
        except (OSError, TimeoutError) as exc:
            log.error("cannot write config file %s: %s", self.config_path, exc)
            return f"cannot write {self.config_path}: {getattr(exc, 'strerror', None) or exc}; nothing changed"
        self.box.cfg = replace(self.box.cfg, queues=queues, agents=agents)
        return None


def _extensions(cfg: Any) -> tuple[str, ...]:
    """The desk-phone extensions of ``[sip] users``."""
    return tuple(str(u[0]) for u in cfg.sip.users)


def _check_id(value: str, what: str) -> str | None:
    if not ID_RE.fullmatch(value or ""):
        return f"{what} id must be 1-32 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
    return None


def _check_name(value: str) -> str | None:
    value = (value or "").strip()
    if not value or len(value) > 64 or any(ord(c) < 32 for c in value):
        return "name must be 1-64 printable characters"
    return None


def _check_password(value: str) -> str | None:
    if len(value) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters"
    if len(value) > 256 or any(ord(c) < 32 for c in value):
        return "password must be printable and at most 256 characters"
    return None


async def _hash(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def _maybe_await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value


def _replace_by_id(items: tuple[Any, ...], item: Any) -> tuple[Any, ...]:
    out = [item if x.id == item.id else x for x in items]
    if not any(x.id == item.id for x in items):
        out.append(item)
    return tuple(out)
