"""Error hierarchy shared by every AT-speaking driver (GSM and analog voice modems).

``DriverError`` -> ``AtError(command, final)`` -> ``CmeError(code)`` / ``CmsError(code)``;
``AtTimeout(command, partial)``; ``PortLost``. ``FatalDriverError`` (restarting will not
help) lives in ``appliance.supervisor`` and is re-exported here for drivers.
"""
from __future__ import annotations

from appliance.supervisor import FatalDriverError

__all__ = [
    "DriverError",
    "AtError",
    "CmeError",
    "CmsError",
    "AtTimeout",
    "PortLost",
    "FatalDriverError",
    "cme_error",
    "cms_error",
]


class DriverError(Exception):
    """A line driver failed; the supervisor restarts it."""


class AtError(DriverError):
    """A command ended with an error final result (ERROR, COMMAND NOT SUPPORT, NO CARRIER ...)."""

    def __init__(self, command: str, final: str) -> None:
        super().__init__(f"{command!r} -> {final!r}")
        self.command = command
        self.final = final


class CmeError(AtError):
    """``+CME ERROR: <code>``; ``code`` is the number, or -1 when the modem sent text."""

    def __init__(self, command: str, final: str, code: int, text: str) -> None:
        super().__init__(command, final)
        self.code = code
        self.text = text


class CmsError(AtError):
    """``+CMS ERROR: <code>`` (SMS layer); ``code`` -1 when the modem sent text."""

    def __init__(self, command: str, final: str, code: int, text: str) -> None:
        super().__init__(command, final)
        self.code = code
        self.text = text


class AtTimeout(DriverError):
    def __init__(self, command: str, partial: tuple[str, ...] = ()) -> None:
        super().__init__(f"no final result for {command!r} (got {list(partial)!r})")
        self.command = command
        self.partial = partial


class PortLost(DriverError):
    """The serial port went away (USB unplug, re-enumeration, EIO)."""


# CMEE=2 text forms that mean the same as a number (modems.md A.11).
_CME_TEXT = {"sim busy": 14, "sim pin required": 11, "sim puk required": 12, "incorrect password": 16,
             "sim not inserted": 10, "sim failure": 13, "unknown": 100, "not supported": 4}


def _code(value: str, table: dict[str, int]) -> int:
    value = value.strip()
    if value.isdigit():
        return int(value)
    return table.get(value.lower(), -1)


def cme_error(command: str, final: str, value: str) -> CmeError:
    return CmeError(command, final, _code(value, _CME_TEXT), value.strip())


def cms_error(command: str, final: str, value: str) -> CmsError:
    return CmsError(command, final, _code(value, {}), value.strip())
