"""Bringing a voice modem up: wake, reset, profile, sample format, caller ID, silence detection.

Order matters (modems.md A.1, B.2, B.4): ``ATZ`` restores the stored profile, which turns
echo back on (so ``ATE0`` follows it) and on several Conexant chipsets forgets ``+VCID``
(so caller ID is checked and re-enabled after every reset, and again on every keepalive).
The sample format is chosen from the modem's own ``AT+VSM=?`` answer, never assumed.
"""
from __future__ import annotations

import logging

from drivers.at.errors import AtError, AtTimeout, FatalDriverError
from drivers.voicemodem.formats import FormatError, choose_format, parse_vsm_options
from drivers.voicemodem.modem import VoiceModem
from drivers.voicemodem.profiles import detect

log = logging.getLogger(__name__)

WAKE_ATTEMPTS = 3  # "AT" tries before giving up on a freshly opened port
WAKE_TIMEOUT_S = 1.0  # a USB modem answers AT within 50 ms; 1 s per try covers a slow boot


async def initialise(modem: VoiceModem) -> None:
    """Wake, reset, pick the profile and sample format, enable caller ID and voice mode."""
    ch = modem.channel
    for attempt in range(1, WAKE_ATTEMPTS + 1):
        try:
            await ch.command("AT", timeout=WAKE_TIMEOUT_S)
            break
        except AtTimeout:
            ch.needs_resync = False  # we are about to ask again anyway
            if attempt == WAKE_ATTEMPTS:
                raise
    await ch.command("ATZ")
    await ch.command("ATE0")  # ATZ restored the stored profile: echo is on again
    ch.echo_expected = False
    if modem.profile is None:
        ati0 = await ch.command("ATI0")
        modem.use_profile(detect(ati0.lines[0] if ati0.lines else ""))
    profile = modem.profile
    assert profile is not None
    log.info("%s: using the %s profile", modem.name, profile.name)
    try:
        await ch.command(profile.voice_class)
        options = parse_vsm_options((await ch.command("AT+VSM=?")).lines)
        fmt, rate = choose_format(options, profile.encodings, profile.format_names)
    except (AtError, FormatError) as exc:
        raise FatalDriverError(f"{modem.name}: not a usable voice modem ({exc})") from exc
    await ensure_caller_id(modem)
    await ch.command(f"AT+VSM={fmt.cml},{rate}")
    modem.format, modem.rate = fmt, rate
    log.info("%s: voice format %d %r (%s) at %d Hz", modem.name, fmt.cml, fmt.name, fmt.encoding, rate)
    for cmd in (f"AT+VSD={profile.silence_sensitivity},{modem.settings.silence_tenths}", *profile.extra_init):
        await modem.best_effort(cmd)


async def ensure_caller_id(modem: VoiceModem) -> None:
    """(Re)enable caller ID; several Conexant chipsets forget it on every reset."""
    profile = modem.profile
    assert profile is not None
    enable = profile.cid_raw if modem.settings.caller_id_raw else profile.cid_enable
    wanted = enable.rsplit("=", 1)[1]
    if profile.cid_query is not None:
        try:
            resp = await modem.channel.command(profile.cid_query)
            # "+VCID: 1" or, on Conexant, a bare "0" with no prefix (home-assistant/core#57765)
            current = "".join(c for c in (resp.lines[-1] if resp.lines else "") if c.isdigit())
            if current == wanted:
                return
            log.info("%s: caller ID is off (%r); enabling it", modem.name, current)
        except AtError:
            pass
    for cmd in profile.cid_extra:
        await modem.best_effort(cmd)
    await modem.channel.command(enable)
