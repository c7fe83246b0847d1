"""The simulated far end of an outgoing call: who answers, when, and what they sound like.

Both modem simulators (GSM and analog) look the dialled number up in ``callees``
(exact number) and fall back to their default ``SimCallee``. The callee's voice is a
steady sine tone (``tone_hz``), so a test can check that the audio of an answered
call really is the callee's: decode it and find the frequency.

    outcome      what the dialling host sees (per simulator, in that modem's own bytes)
    answer       alerting after ``alert_after_s``, answered after ``answer_after_s``
    busy         BUSY (Huawei ``^CEND:..,17``) after ``answer_after_s``
    no_answer    NO ANSWER (Huawei ``^CEND:..,19``) after ``answer_after_s``
    unreachable  NO CARRIER (Huawei ``^CEND:..,1``) after ``answer_after_s``
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from media.frames import SAMPLE_RATE
from media.tones import dbfs_to_amplitude, to_pcm

TONE_SECONDS = 1.0  # one second of tone, looped: a whole number of periods for integer frequencies


class Outcome(StrEnum):
    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class SimCallee:
    outcome: Outcome = Outcome.ANSWER
    alert_after_s: float = 0.2  # the network reaches the callee's phone; ringback starts
    answer_after_s: float = 1.0  # from the dial: answered (or busy / no answer / unreachable)
    hangup_after_s: float | None = None  # after the answer the callee hangs up; None: never
    tone_hz: float = 1000.0
    tone_dbfs: float = -12.0

    def __post_init__(self) -> None:
        if self.answer_after_s < self.alert_after_s or self.alert_after_s < 0:
            raise ValueError("a callee alerts before it answers: need 0 <= alert_after_s <= answer_after_s")
        if not 50.0 <= self.tone_hz <= SAMPLE_RATE / 2 - 100:
            raise ValueError(f"tone_hz {self.tone_hz} is outside the 8 kHz telephone band")

    def pcm(self) -> bytes:
        """The callee's voice: ``TONE_SECONDS`` of 8 kHz s16le sine, to be looped."""
        n = np.arange(int(SAMPLE_RATE * TONE_SECONDS))
        return to_pcm(dbfs_to_amplitude(self.tone_dbfs) * np.sin(2 * np.pi * self.tone_hz * n / SAMPLE_RATE))


DEFAULT = SimCallee()


def pick(callees: dict[str, SimCallee], default: SimCallee | None, number: str) -> SimCallee | None:
    """The callee for ``number``: an exact entry, else the default (None: the test drives the call)."""
    return callees.get(number, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options for the simulated far end (shared by both simulator CLIs)."""
    g = parser.add_argument_group("outgoing calls (the simulated callee)")
    g.add_argument("--callee", choices=[o.value for o in Outcome], default=Outcome.ANSWER.value)
    g.add_argument("--answer-after", type=float, default=DEFAULT.answer_after_s, help="seconds from dial to outcome")
    g.add_argument("--hangup-after", type=float, default=None, help="callee hangs up this long after answering")
    g.add_argument("--tone-hz", type=float, default=DEFAULT.tone_hz, help="the callee's voice: a sine tone")


def from_arguments(args: argparse.Namespace) -> SimCallee:
    return SimCallee(outcome=Outcome(args.callee), alert_after_s=min(DEFAULT.alert_after_s, args.answer_after),
                     answer_after_s=args.answer_after, hangup_after_s=args.hangup_after, tone_hz=args.tone_hz)
