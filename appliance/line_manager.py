"""Owns the modem lines (GSM and analog): starts them supervised, turns their driver
events into ``LineStatus`` on the hub, feeds their SMS to the message centre and, when
no real modem is configured, runs the built-in simulators so a new box shows lines.
``diallers()`` hands the dial plan every line that can place calls (now or once up);
the simulated lines' far end answers with a tone (drivers.sim.callee).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any

from appliance.config import BoxConfig
from appliance.hub import Topic
from appliance.lines import Dialler, IncomingCallHandler, LineKind, LineStatus
from appliance.messaging import InboundSms, MessageCenter

log = logging.getLogger(__name__)

LINE_STOP_TIMEOUT_S = 5.0  # a line's tasks must end within this at shutdown
_REGISTRATION = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


class LineManager:
    def __init__(self, cfg: BoxConfig, topic: Topic, handler: IncomingCallHandler, messages: MessageCenter) -> None:
        self._cfg = cfg
        self._topic = topic
        self._handler = handler
        self._messages = messages
        self._status: dict[str, LineStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.lines: dict[str, Any] = {}  # config key -> GsmLine / AnalogLine
        self.simulators: dict[str, Any] = {}  # "gsm" / "analog" -> simulator, when running

    # --- status ------------------------------------------------------------------------------
    def status(self) -> list[LineStatus]:
        return sorted(self._status.values(), key=lambda s: s.line_id)

    def diallers(self) -> dict[str, Dialler]:
        """line_id -> the line object that places calls on it, including lines that are down
        right now (their ``dial`` raises DialFailed(LINE_DOWN) until they come up). Lines with
        a bad config were never created and are not listed. A GSM line's id changes from
        ``gsm:<port>`` to ``gsm:<IMEI>`` once its modem has been identified."""
        return {line.line_id: line for line in self.lines.values()}

    def _set(self, key: str, status: LineStatus) -> None:
        old = self._status.get(key)
        status = replace(status, updated=time.time())
        self._status[key] = status
        if old is None or old.state != status.state:
            log.info("line %s is %s%s", status.line_id, status.state, f" ({status.detail})" if status.detail else "")
        self._topic.publish(status)

    # --- start / stop --------------------------------------------------------------------------
    async def start(self) -> None:
        gsm = list(self._cfg.gsm)
        if not gsm and self._cfg.simulators.gsm:
            gsm = [self._start_gsm_simulator()]
        for i, table in enumerate(gsm):
            self._start_gsm(f"gsm{i}", table)
        analog = list(self._cfg.analog)
        if not analog and self._cfg.simulators.analog:
            analog = [await self._start_analog_simulator()]
        for i, table in enumerate(analog):
            self._start_analog(f"analog{i}", table)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=LINE_STOP_TIMEOUT_S)
        for sim in self.simulators.values():
            with contextlib.suppress(Exception):
                closed = sim.close()
                if asyncio.iscoroutine(closed):
                    await asyncio.wait_for(closed, LINE_STOP_TIMEOUT_S)

    # --- analog --------------------------------------------------------------------------------
    async def _start_analog_simulator(self) -> dict[str, Any]:
        from drivers.sim.analog import AnalogModemSim
        from drivers.sim.callee import SimCallee

        sim = await AnalogModemSim("conexant", callee=SimCallee()).start()  # dialled numbers answer with a tone
        self.simulators["analog"] = sim
        log.info("no analog voice modem configured: running a simulated Conexant modem on %s", sim.port)
        return {"port": sim.port, "profile": "conexant"}

    def _start_analog(self, key: str, table: dict[str, Any]) -> None:
        from drivers.voicemodem.config import AnalogConfig
        from drivers.voicemodem.line import AnalogLine

        try:
            config = AnalogConfig.from_dict(table)
        except ValueError as exc:
            log.error("analog line %s is not started: bad [[analog]] config (%s)", key, exc)
            self._set(key, LineStatus(key, LineKind.ANALOG, "disabled", detail=f"bad config: {exc}"))
            return
        line = AnalogLine.from_config(config, self._handler, on_status=lambda st: self._set(key, st))
        self.lines[key] = line
        self._set(key, LineStatus(line.line_id, LineKind.ANALOG, "starting", port=config.port or config.usb))
        self._tasks[key] = asyncio.create_task(self._run_analog(key, line), name=f"line:{key}")

    async def _run_analog(self, key: str, line: Any) -> None:
        try:
            await line.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("line %s stopped: %s; fix its config and restart the box", key, exc)
            st = self._status.get(key)
            if st is not None:
                self._set(key, replace(st, state="down", detail=str(exc)))

    # --- GSM ------------------------------------------------------------------------------------
    def _start_gsm_simulator(self) -> dict[str, Any]:
        from drivers.sim.callee import SimCallee
        from drivers.sim.gsm import GsmSimulator

        sim = GsmSimulator("huawei", callee=SimCallee()).start()  # dialled numbers answer with a tone
        self.simulators["gsm"] = sim
        log.info("no GSM modem configured: running a simulated Huawei modem on %s (audio %s)", sim.port, sim.audio_port)
        return {"port": sim.port, "audio_port": sim.audio_port, "profile": "huawei"}

    def _start_gsm(self, key: str, table: dict[str, Any]) -> None:
        from drivers.gsm.line import GsmConfig, GsmLine

        try:
            config = GsmConfig.from_dict(table)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("GSM modem %s is not started: bad [[gsm]] config (%s)", key, exc)
            self._set(key, LineStatus(key, LineKind.GSM, "disabled", detail=f"bad config: {exc}"))
            return
        line = GsmLine(config, on_sms=lambda ev: self._gsm_sms(ev), on_event=lambda ev: self._gsm_event(key, ev))
        self.lines[key] = line
        self._set(key, LineStatus(line.line_id, LineKind.GSM, "starting", port=config.port or config.usb))
        self._tasks[key] = asyncio.create_task(self._run(key, line), name=f"line:{key}")

    async def _run(self, key: str, line: Any) -> None:
        try:
            await line.run(self._handler)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # FatalDriverError: restarting cannot help (wrong PIN, wrong modem)
            log.error("line %s stopped: %s; fix its config and restart the box", key, exc)
            st = self._status.get(key)
            if st is not None:
                self._set(key, replace(st, state="down", detail=str(exc)))

    def _gsm_event(self, key: str, ev: Any) -> None:
        from drivers.gsm import events as e

        st = self._status.get(key) or LineStatus(key, LineKind.GSM, "starting")
        if isinstance(ev, e.ModemReady):
            st = replace(st, line_id=ev.line_id, state="up", detail="", imei=ev.imei, iccid=ev.iccid,
                         model=" ".join(p for p in (ev.manufacturer, ev.model) if p) or None,
                         operator=ev.operator, signal=ev.rssi if ev.rssi not in (None, 99) else None, port=ev.port,
                         sim="ready")
            line = self.lines.get(key)
            if line is not None:
                line.line_id = ev.line_id  # the driver adopts it a moment later; views look drivers up by it now
                self._messages.add_sender(ev.line_id, line.send_sms)
        elif isinstance(ev, e.ModemLost):
            st = replace(st, state="down", detail=ev.reason, calls=0)
            self._messages.remove_sender(ev.line_id)
        elif isinstance(ev, e.SignalChanged):
            st = replace(st, signal=None if ev.rssi == 99 else ev.rssi)
        elif isinstance(ev, e.RegistrationChanged):
            st = replace(st, registration=_REGISTRATION.get(ev.stat, str(ev.stat)))
        else:
            return
        self._set(key, st)

    async def _gsm_sms(self, ev: Any) -> None:
        from drivers.gsm import events as e

        if isinstance(ev, e.SmsReceived):
            await self._messages.received(InboundSms(
                line_id=ev.line_id, sender=ev.sender, text=ev.text, at=ev.timestamp.timestamp(),
                complete=ev.complete, raw=ev.raw_pdus,
            ))
        elif isinstance(ev, e.SmsUndecodable):
            await self._messages.received(InboundSms(
                line_id=ev.line_id, sender="unknown", text="", at=time.time(), decodable=False, raw=(ev.raw_pdu,),
            ))
