"""Chipset profiles as data (style P2): a V.253 base and per-chipset differences.

Differences that matter to the driver (modems.md B.1-B.6): the sample-format
preference (``+VSM`` codes are vendor-specific, so the driver names *encodings* here
and finds their codes in the modem's ``AT+VSM=?`` answer), caller-ID enable command,
silence-detection sensitivity base, full duplex (``+VTR``) or half duplex only,
which DLE byte stops receive, whether ``<DLE><SUB>`` means two DLEs, and whether
``<DLE>s`` is reported even after speech (Agere/Lucent).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.voicemodem.dle import DTE_STOP_RX
from drivers.voicemodem.formats import Encoding


@dataclass(frozen=True, slots=True)
class VoiceModemProfile:
    name: str
    ati0: tuple[str, ...] = ()  # ATI0 answers that identify the chipset (auto-detection)
    voice_class: str = "AT+FCLASS=8"
    cid_enable: str = "AT+VCID=1"  # formatted caller ID; raw is cid_raw
    cid_raw: str = "AT+VCID=2"
    cid_query: str | None = "AT+VCID?"  # None: cannot ask, always (re)send cid_enable
    cid_extra: tuple[str, ...] = ()  # best-effort commands some firmware needs as well
    # G.711 first: 64 kbit/s fits a 115200-baud UART modem, 16-bit linear (128 kbit/s) does not
    encodings: tuple[Encoding, ...] = (Encoding.ULAW, Encoding.ALAW, Encoding.LINEAR16, Encoding.UNSIGNED8)
    format_names: tuple[str, ...] = ()  # known-good +VSM names, preferred among equal encodings
    silence_sensitivity: int = 128  # +VSD <sds>: USR/V.253 nominal 128, Conexant counts from 0
    full_duplex: bool = True  # +VTR supported; otherwise +VRX receive only
    off_hook: str = "AT+VLS=1"
    on_hook: str = "AT+VLS=0"
    stop_receive: bytes = DTE_STOP_RX
    sub_is_two_dles: bool = True  # <DLE><SUB> = two literal 0x10 (V.253)
    silence_after_speech_is_s: bool = False  # Lucent: <DLE>s even after speech (plain silence)
    extra_init: tuple[str, ...] = ()


V253 = VoiceModemProfile(name="V.253 generic", ati0=())

CONEXANT = replace(
    V253,
    name="Conexant CX93001",
    ati0=("56000",),
    cid_extra=("AT-SCID=1",),  # some firmware decodes caller ID only with this too
    encodings=(Encoding.LINEAR16, Encoding.UNSIGNED8),  # cml 1 "UNSIGNED PCM", 8-bit offset-binary
    silence_sensitivity=0,
)

USR_5637 = replace(
    V253,
    name="USR 5637",
    ati0=("5601",),
    # callattendant runs AT+VSM=128,8000 on the 5637: the format known to work with it
    encodings=(Encoding.UNSIGNED8, Encoding.ULAW, Encoding.ALAW, Encoding.LINEAR16),
    format_names=("8-BIT LINEAR",),
    full_duplex=False,
)

ROCKWELL = replace(
    V253,
    name="Rockwell RC336 (V.253 firmware)",
    ati0=("336", "144 VOICE"),
    cid_enable="AT#CID=1",
    cid_raw="AT#CID=2",
    cid_query="AT#CID?",
    full_duplex=False,
)

AGERE = replace(
    V253,
    name="Agere/Lucent Venus",
    ati0=("AEIGPM560LKTF1",),
    encodings=(Encoding.ULAW, Encoding.ALAW, Encoding.LINEAR16, Encoding.UNSIGNED8),
    sub_is_two_dles=False,
    silence_after_speech_is_s=True,
)

PROFILES: dict[str, VoiceModemProfile] = {
    "v253": V253,
    "conexant": CONEXANT,
    "usr5637": USR_5637,
    "rockwell": ROCKWELL,
    "agere": AGERE,
}


def detect(ati0: str) -> VoiceModemProfile:
    """The profile whose ``ATI0`` answer matches, else the V.253 base."""
    answer = ati0.strip()
    for profile in PROFILES.values():
        if answer in profile.ati0:
            return profile
    return V253
