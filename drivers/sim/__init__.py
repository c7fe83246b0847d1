"""Protocol-accurate modem simulators on pseudo-terminals.

Each simulator module exposes ``main(argv: list[str]) -> int`` (its stand-alone CLI,
which prints the pty path(s) to use) and a programmatic API for tests. Register new
simulators in ``SIMULATORS``; ``python -m drivers.sim <name> [args]`` runs them.
"""
from __future__ import annotations

SIMULATORS: dict[str, str] = {
    "gsm": "drivers.sim.gsm",  # GSM/LTE modem: profiles huawei|simcom|quectel|generic
    "analog": "drivers.sim.analog",  # V.253 analog voice modem
}
