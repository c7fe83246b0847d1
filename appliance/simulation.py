"""Drive the built-in simulated modems of a running box: ring a line, deliver an SMS,
hang up, press keys during a call (to try IVR menus), and choose how the far end of calls
the box dials behaves (answer / busy / no answer / unreachable, after how long, hang-up
later). Used through the local API (``python run.py sim ...``) so a newcomer can watch a
GSM call, an analog call and an SMS arrive -- and click-to-dial out -- without hardware."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

RING_EVERY_S = 5.0  # GSM networks repeat RING about every 5 s until the call is answered
RING_FOR_S = 60.0  # then the simulated caller gives up, as a real network would
KEY_GAP_S = 0.3  # a person pressing keys one after another on a handset
DTMF_DIGITS = frozenset("0123456789*#ABCD")  # the keys ``keys`` accepts (run.py and the local API check them too)


class SimulationError(Exception):
    """The request cannot be carried out; the message is for the operator."""


class SimulationControl:
    def __init__(self, simulators: dict[str, Any]) -> None:
        self._sims = simulators
        self._tasks: set[asyncio.Task[None]] = set()
        self._keypads: dict[str, asyncio.Lock] = {}  # one caller's key presses at a time per line
        self._voice_loaded = False

    def available(self) -> list[str]:
        return sorted(self._sims)

    def _sim(self, kind: str) -> Any:
        sim = self._sims.get(kind)
        if sim is None:
            raise SimulationError(f"no simulated {kind} line is running (real modems are configured, or "
                                  f"[simulators] {kind} = false)")
        return sim

    def call(self, kind: str, number: str | None, name: str | None = None) -> str:
        sim = self._sim(kind)
        if kind == "gsm":
            self._give_caller_a_voice(sim)
            self._spawn(self._ring_gsm(sim, number), "sim-gsm-ring")
        elif kind == "analog":
            from drivers.sim.analog import SimCaller

            if getattr(sim, "audio", None) is None:
                from media.tones import hold_music_loop

                sim.audio = hold_music_loop()  # the demo caller "speaks" the built-in tune
            caller = SimCaller(number=number, name=name or "BRANCHLINE DEMO")
            self._spawn(self._ring_analog(sim, caller), "sim-analog-ring")
        else:
            raise SimulationError(f"unknown line kind {kind!r}: use gsm or analog")
        log.info("simulated %s line rings from %s", kind, number or "a withheld number")
        return f"the simulated {kind} line is ringing"

    def sms(self, number: str, text: str) -> str:
        if not text.strip():
            raise SimulationError("the SMS text is empty")
        sim = self._sim("gsm")
        sim.deliver_text(number, text)
        log.info("simulated GSM line delivers an SMS from %s", number)
        return "SMS delivered to the simulated GSM modem"

    def callee(self, kind: str, outcome: str = "answer", *, answer_after_s: float | None = None,
               hangup_after_s: float | None = None, tone_hz: float | None = None, number: str | None = None) -> str:
        """How the simulated far end of an outgoing call on ``kind`` behaves from now on: for
        ``number`` only, or for every number. The callee's voice is a sine tone."""
        from dataclasses import replace

        from drivers.sim.callee import DEFAULT, Outcome

        sim = self._sim(kind)
        try:
            base = replace(DEFAULT, outcome=Outcome(outcome))
            if answer_after_s is not None:
                base = replace(base, answer_after_s=answer_after_s, alert_after_s=min(base.alert_after_s, answer_after_s))
            who = replace(base, hangup_after_s=hangup_after_s, tone_hz=tone_hz if tone_hz is not None else base.tone_hz)
        except ValueError as exc:
            raise SimulationError(f"bad callee: {exc} (outcomes: {', '.join(o.value for o in Outcome)})") from None
        if number:
            sim.callees[number] = who
        else:
            sim.callee = who
        target = f"calls to {number}" if number else "every call"
        log.info("simulated %s line: %s will get %s", kind, target, who.outcome.value)
        return f"simulated {kind} line: {target} -> {who.outcome.value}"

    def hangup(self, kind: str) -> str:
        sim = self._sim(kind)
        if kind == "gsm":
            sim.caller_hangs_up()
        else:
            sim.send_event("b")  # busy tone: the far end has gone
        return f"the caller on the simulated {kind} line hung up"

    def keys(self, kind: str, digits: str) -> str:
        """The caller on ``kind``'s answered call presses ``digits`` (0-9 * # A-D), ``KEY_GAP_S``
        apart, in the bytes that line's modem reports them with (drivers.sim ``send_dtmf``)."""
        digits = digits.strip().upper()
        bad = "".join(sorted(set(digits) - DTMF_DIGITS))
        if not digits or bad:
            raise SimulationError(f"keys must be DTMF digits 0-9 * # A-D (got {bad or 'none'!r})")
        sim = self._sim(kind)
        if not self._in_call(kind, sim):
            raise SimulationError(f"no simulated call on the {kind} line (ring it with 'sim call {kind}' "
                                  "and let the box answer first)")
        self._spawn(self._press(kind, sim, digits), f"sim-{kind}-keys")
        log.info("simulated %s caller presses %s", kind, digits)
        return f"the caller on the simulated {kind} line presses {digits}"

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    # ---------------------------------------------------------------------------------------
    def _give_caller_a_voice(self, sim: Any) -> None:
        if self._voice_loaded or getattr(sim, "pcm_source", b""):
            return
        from media.tones import hold_music_loop

        sim.pcm_source = hold_music_loop()  # the demo caller "speaks" the built-in tune
        self._voice_loaded = True

    async def _ring_gsm(self, sim: Any, number: str | None) -> None:
        sim.place_call(number)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RING_FOR_S
        with contextlib.suppress(Exception):
            while loop.time() < deadline:
                await asyncio.sleep(RING_EVERY_S)  # the network's ring cadence, not synchronisation
                call = getattr(sim.model, "call", None)
                if call is None or call.state != "ringing":
                    return
                sim.ring()
            if getattr(sim.model, "call", None) is not None and sim.model.call.state == "ringing":
                sim.caller_hangs_up()

    async def _ring_analog(self, sim: Any, caller: Any) -> None:
        """Ring until the box picks up (or the caller gives up); never ring on after that."""
        ringing = asyncio.create_task(sim.ring(caller, style="us", rings=int(RING_FOR_S / 6)), name="sim-analog-rings")
        try:
            await sim.wait_for(lambda: sim.off_hook or ringing.done(), timeout=RING_FOR_S + 10)
        except TimeoutError:
            pass
        finally:
            answered = sim.off_hook
            ringing.cancel()
            await asyncio.wait({ringing})
        log.info("simulated analog caller stops ringing (%s)", "answered" if answered else "gave up")

    @staticmethod
    def _in_call(kind: str, sim: Any) -> bool:
        if kind == "gsm":
            call = getattr(sim.model, "call", None)
            return call is not None and call.state == "active"
        return bool(sim.off_hook)

    async def _press(self, kind: str, sim: Any, digits: str) -> None:
        async with self._keypads.setdefault(kind, asyncio.Lock()):
            for n, digit in enumerate(digits):
                if n:
                    await asyncio.sleep(KEY_GAP_S)  # the caller's pace, not synchronisation
                if not self._in_call(kind, sim):
                    log.info("simulated %s call ended: keys %s not pressed", kind, digits[n:])
                    return
                sim.send_dtmf(digit)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
