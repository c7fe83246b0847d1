"""Vendor differences as data: one frozen ``ModemProfile`` per family (modems.md A.6-A.13).

Profiles derive from the 3GPP base with ``dataclasses.replace``; the driver code has
no ``if huawei:`` branches, only lookups in the profile.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class AudioStart(StrEnum):
    NONE = "none"  # analog codec pins only (SIM800, Wavecom): no PCM for us
    ON_ANSWER = "on_answer"  # PCM flows once ATA/ATD returns OK (Quectel QPCMV, generic)
    ON_CONN = "on_conn"  # Huawei: after ^CONN send AT^DDSETEX=2
    ON_VOICE_BEGIN = "on_voice_begin"  # SIMCom: after "VOICE CALL: BEGIN" send AT+CPCMREG=1


BASE_URCS = (
    "RING", "+CRING:", "+CLIP:", "+CCWA:", "+CMTI:", "+CDSI:", "+CMT:", "+CUSD:", "+CREG:",
    "+CGREG:", "+CEREG:", "+CPIN:", "+CLCC:", "+CIEV:", "+DTMF:", "+RXDTMF:", "MISSED_CALL:",
    "HANGUP:", "RDY", "Call Ready", "SMS Ready", "+CFUN:",
)


@dataclass(frozen=True, slots=True)
class ModemProfile:
    key: str
    name: str
    urc_prefixes: tuple[str, ...] = BASE_URCS
    noise_prefixes: tuple[str, ...] = ()  # status URCs that only update gauges or are ignored
    error_finals: tuple[str, ...] = ()
    vendor_init: tuple[str, ...] = ()  # best effort: a failure is logged, not fatal
    iccid_command: str = "AT+CCID"
    iccid_prefix: str = "+CCID:"
    answer: str = "ATA"
    dial: str = "ATD{number};"
    hangup: str = "AT+CHUP"
    audio_start: AudioStart = AudioStart.ON_ANSWER
    audio_on: tuple[str, ...] = ()
    audio_off: tuple[str, ...] = ()
    audio_check: str | None = None  # e.g. AT^CVOICE? ; ERROR means voice is locked in firmware
    audio_retries: int = 1
    has_audio_port: bool = False
    dtmf_send: str = "AT+VTS={digit}"
    dtmf_urc: str | None = "+DTMF:"  # None: no URC, use the in-band detector on the audio
    dtmf_detect_on: tuple[str, ...] = ()  # e.g. SIM800 AT+DDET=1,0,1,1 (best effort at bring-up)
    ussd_packed: bool = False
    pcm_frame_bytes: int = 320  # 8 kHz s16le, 20 ms
    poll_clcc_when_dialing: bool = True  # no progress URCs: learn alerting/answer from +CLCC


GENERIC = ModemProfile(key="generic", name="3GPP TS 27.007 modem", audio_start=AudioStart.NONE)

HUAWEI = replace(
    GENERIC,
    key="huawei",
    name="Huawei E1550/E173/E1752",
    urc_prefixes=BASE_URCS + ("^CEND:", "^CONN:", "^ORIG:", "^CONF:", "^SMMEMFULL"),
    noise_prefixes=("^RSSI", "^BOOT", "^MODE", "^HCSQ", "^SRVST", "^SIMST", "^CCIN", "^DSFLOWRPT", "^SYSSTART"),
    error_finals=("COMMAND NOT SUPPORT",),
    vendor_init=("AT^CURC=0",),
    iccid_command="AT^ICCID?",
    iccid_prefix="^ICCID:",
    audio_start=AudioStart.ON_CONN,
    audio_on=("AT^DDSETEX=2",),
    audio_check="AT^CVOICE?",
    has_audio_port=True,
    dtmf_send="AT^DTMF={call},{digit}",
    dtmf_urc=None,
    ussd_packed=True,
    poll_clcc_when_dialing=False,
)

SIMCOM = replace(
    GENERIC,
    key="simcom",
    name="SIMCom SIM7600",
    urc_prefixes=BASE_URCS + ("VOICE CALL:", "^DSCI:"),
    noise_prefixes=("+CFUN:", "RDY", "PB DONE", "SMS DONE"),
    vendor_init=("AT+CLCC=1",),
    audio_start=AudioStart.ON_VOICE_BEGIN,
    audio_on=("AT+CPCMREG=1",),
    audio_off=("AT+CPCMREG=0",),
    audio_retries=3,
    has_audio_port=True,
    dtmf_send='AT+VTS="{digit}"',
    dtmf_urc="+RXDTMF:",
    poll_clcc_when_dialing=False,
)

QUECTEL = replace(
    GENERIC,
    key="quectel",
    name="Quectel EC2x",
    urc_prefixes=BASE_URCS + ("^DSCI:", "+QIND:", "+QTONEDET:"),
    noise_prefixes=("+QIND:", "RDY"),
    vendor_init=("AT^DSCI=1",),  # ^DSCI call-state URCs: the answer and the release at once (modems.md A.7)
    iccid_command="AT+QCCID",
    iccid_prefix="+QCCID:",
    answer="AT+QPCMV=0;+QPCMV=1,0;A",
    dial="AT+QPCMV=0;+QPCMV=1,0;D{number};",
    audio_start=AudioStart.ON_ANSWER,
    audio_off=("AT+QPCMV=0",),
    has_audio_port=True,
    dtmf_urc="+QTONEDET:",
    dtmf_detect_on=("AT+QTONEDET=1",),  # keys are reported only once detection is on (modems.md A.8)
)

PROFILES: dict[str, ModemProfile] = {p.key: p for p in (GENERIC, HUAWEI, SIMCOM, QUECTEL)}


def profile(key: str) -> ModemProfile:
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown modem profile {key!r}; known: {', '.join(PROFILES)}") from None
