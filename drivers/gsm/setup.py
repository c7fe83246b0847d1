"""Modem bring-up routines (modems.md A.2, A.9): wake, echo, SIM PIN, identity, config.

Each routine takes the command channel and the profile and returns typed values; the
session (drivers.gsm.modem) runs them in order. They are separate so that each
transcript can be replayed against exactly the routine it exercises.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from drivers.at.channel import AtChannel, Response
from drivers.at.errors import AtError, AtTimeout, CmeError, CmsError, FatalDriverError
from drivers.gsm.profiles import ModemProfile

log = logging.getLogger(__name__)

WAKE_ATTEMPTS = 5  # UART modules autobaud on the first AT; USB modems answer the first one
WAKE_TIMEOUT_S = 1.0  # per attempt; "AT" answers in 5-300 ms
SIM_BUSY_FIRST_S = 0.2  # back-off after "+CME ERROR: 14": 0.2, 0.4, 0.8 ... capped below
SIM_BUSY_MAX_STEP_S = 3.2
SIM_BUSY_BUDGET_S = 20.0  # SIM-busy windows of 2-15 s are normal after PIN entry; give 20 s
CLAC_TIMEOUT_S = 10.0  # AT+CLAC prints a few hundred lines; slow UARTs need several seconds
CFUN_BUSY_CODES = frozenset({14, 515})  # SIM busy; vendor "device busy/initialising"
_sleep = asyncio.sleep  # back-off waits go through here (tests record them)


@dataclass(frozen=True, slots=True)
class Identity:
    manufacturer: str | None
    model: str | None
    imei: str
    iccid: str | None


async def wake(ch: AtChannel) -> None:
    """``AT`` until ``OK`` (echo may still be on)."""
    for attempt in range(1, WAKE_ATTEMPTS + 1):
        try:
            await ch.command("AT", timeout=WAKE_TIMEOUT_S)
            ch.needs_resync = False
            return
        except AtTimeout:
            log.debug("%s: no answer to AT (attempt %d)", ch.name, attempt)
        except AtError:
            return  # it talks; ERROR to a bare AT happens on some Qualcomm firmware
    raise AtTimeout("AT")


async def reset_echo(ch: AtChannel, *, factory_reset: bool = False) -> None:
    """Optional ``ATZ`` (restores echo on), then ``ATE0`` — always after ``ATZ``."""
    if factory_reset:
        try:
            await ch.command("ATZ")
        except AtError:
            await ch.command("ATZ")  # some Qualcomm firmware answers ERROR the first time
    await ch.command("ATE0")
    await ch.command("AT+CMEE=1")


async def retry_sim_busy(ch: AtChannel, command: str, *, budget_s: float = SIM_BUSY_BUDGET_S, **kw) -> Response:
    """Run ``command``; on SIM busy (CME 14 / CMS 314 / 515) retry with growing back-off."""
    delay, spent = SIM_BUSY_FIRST_S, 0.0
    while True:
        try:
            return await ch.command(command, **kw)
        except (CmeError, CmsError) as exc:
            busy = exc.code in CFUN_BUSY_CODES if isinstance(exc, CmeError) else exc.code == 314
            if not busy or spent >= budget_s:
                raise
            log.info("%s: SIM busy answering %s; retrying in %.1fs", ch.name, command, delay)
            await _sleep(delay)
            spent += delay
            delay = min(delay * 2, SIM_BUSY_MAX_STEP_S)


async def sim_state(ch: AtChannel) -> str:
    try:
        r = await ch.command("AT+CPIN?", final_on_prefix=True)  # Wavecom: +CPIN: READY and no OK
    except CmeError as exc:
        if exc.code == 10:
            raise FatalDriverError("no SIM card inserted") from None
        if exc.code in CFUN_BUSY_CODES:
            await asyncio.sleep(SIM_BUSY_FIRST_S)
            return await sim_state(ch)
        raise
    return (r.first("+CPIN:") or "").upper()


async def unlock_sim(ch: AtChannel, pin: str | None) -> None:
    """Enter the PIN once if the SIM wants one. Never retries a PIN (3 failures lock the SIM)."""
    state = await sim_state(ch)
    if state == "READY":
        return
    if state == "SIM PIN":
        if not pin:
            raise FatalDriverError("SIM needs a PIN and none is configured")
        try:
            await ch.command(f'AT+CPIN="{pin}"')
        except CmeError as exc:
            after = ""
            try:
                after = await sim_state(ch)
            except AtError:
                pass
            if exc.code == 16:
                raise FatalDriverError(f"SIM PIN wrong (SIM now reports {after or 'unknown'}); not retrying") from None
            raise FatalDriverError(f"SIM PIN rejected: {exc.final}") from None
        log.info("%s: SIM PIN accepted", ch.name)
        return
    if "PUK" in state:
        raise FatalDriverError(f"SIM is locked ({state}); unlock it with the PUK in a phone")
    raise FatalDriverError(f"SIM not usable: +CPIN: {state}")


async def run_or_unlock(ch: AtChannel, command: str, pin: str | None) -> Response:
    """Run ``command``; if the SIM wants its PIN (``+CME ERROR: 11``) unlock once and retry."""
    try:
        return await retry_sim_busy(ch, command)
    except CmeError as exc:
        if exc.code != 11:
            raise
        log.info("%s: %s needs the SIM PIN", ch.name, command)
    await unlock_sim(ch, pin)
    return await retry_sim_busy(ch, command)


async def identify(ch: AtChannel, profile: ModemProfile) -> Identity:
    async def value(cmd: str, prefix: str | None = None) -> str | None:
        try:
            r = await ch.command(cmd)
        except AtError:
            return None
        for line in r.lines:
            text = line.split(":", 1)[1] if prefix and line.upper().startswith(prefix.upper()) else line
            text = text.strip().strip('"').strip()
            if text:
                return text
        return None

    manufacturer = await value("AT+CGMI", "+CGMI:")
    model = await value("AT+CGMM", "+CGMM:")
    imei = await value("AT+CGSN", "+CGSN:")
    if not imei or not re.fullmatch(r"\d{14,17}", imei):
        raise AtError("AT+CGSN", f"no IMEI in reply ({imei!r})")
    iccid = await value(profile.iccid_command, profile.iccid_prefix)
    if iccid:
        iccid = re.sub(r"[^0-9A-Fa-f]", "", iccid) or None
    return Identity(manufacturer, model, imei, iccid)


async def best_effort(ch: AtChannel, *commands: str) -> None:
    for cmd in commands:
        try:
            await ch.command(cmd)
        except AtError as exc:
            log.info("%s: %s not accepted (%s); continuing", ch.name, cmd, exc.final)


async def configure(ch: AtChannel, profile: ModemProfile, pin: str | None = None) -> str | None:
    """SMS PDU mode, notifications, caller ID, registration URCs. Returns <mem1>."""
    await run_or_unlock(ch, "AT+CMGF=0", pin)
    storage = None
    try:
        r = await retry_sim_busy(ch, "AT+CPMS?")
        m = re.match(r'\s*"?(\w+)"?', r.first("+CPMS:") or "")
        storage = m.group(1) if m else None
    except AtError as exc:
        log.info("%s: AT+CPMS? not accepted (%s)", ch.name, exc.final)
    await best_effort(ch, "AT+CNMI=2,1,0,2,0", "AT+CLIP=1", "AT+CRC=1", "AT+CVHU=0", "AT+CREG=2", "AT+CEREG=2",
                      *profile.vendor_init, *profile.dtmf_detect_on)
    return storage


async def signal(ch: AtChannel) -> int | None:
    try:
        r = await ch.command("AT+CSQ")
    except AtError:
        return None
    m = re.match(r"\s*(\d+)", r.first("+CSQ:") or "")
    return int(m.group(1)) if m else None


async def operator(ch: AtChannel) -> str | None:
    try:
        await ch.command("AT+COPS=3,0")
        r = await ch.command("AT+COPS?")
    except AtError:
        return None
    m = re.search(r'"([^"]*)"', r.first("+COPS:") or "")
    return m.group(1) if m else None


async def voice_supported(ch: AtChannel, profile: ModemProfile) -> bool:
    """Huawei ``^CVOICE:0,8000,16,20`` means voice on; ERROR means voice locked in firmware."""
    if profile.audio_check is None:
        return True
    try:
        r = await ch.command(profile.audio_check)
    except AtError as exc:
        log.warning("%s: modem has no voice (%s -> %s)", ch.name, profile.audio_check, exc.final)
        return False
    value = r.first(profile.audio_check[2:].rstrip("?") + ":") or ""
    return value.split(",")[0].strip() == "0"


async def supported_commands(ch: AtChannel) -> frozenset[str]:
    """``AT+CLAC``; Huawei lists bare names with ``\\r\\r\\n`` ends (the framer copes)."""
    try:
        r = await ch.command("AT+CLAC", timeout=CLAC_TIMEOUT_S)
    except AtError:
        return frozenset()
    return frozenset(line.split(":", 1)[1].strip() if line.startswith("+CLAC:") else line.strip() for line in r.lines)


async def dtmf_command(ch: AtChannel, profile: ModemProfile) -> str:
    """Probe how to send DTMF: Huawei ``^DTMF``, else ``+VTS`` (quoted: SIMCom requires it)."""
    try:
        await ch.command("AT^DTMF=?")
        return "AT^DTMF={call},{digit}"
    except AtError:
        pass
    try:
        await ch.command("AT+VTS=?")
        return 'AT+VTS="{digit}"'
    except AtError:
        return profile.dtmf_send
