"""Write a classic libpcap file of RTP packets (Ethernet/IPv4/UDP) that SIPp can replay."""
from __future__ import annotations

import audioop
import math
import struct
from pathlib import Path

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_rtp_pcap(path: Path, payloads: list[bytes], *, payload_type: int, ptime_ms: int,
                   src_port: int = 4000, dst_port: int = 6000) -> None:
    """One RTP packet per payload, ``ptime_ms`` apart; seq/timestamp consecutive."""
    out = bytearray(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
    samples = 8 * ptime_ms
    for i, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | payload_type, i + 1, i * samples,
                          0x0BADCAFE) + payload
        udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                                   bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])))
        struct.pack_into("!H", ip, 10, _ipv4_checksum(bytes(ip)))
        frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
        t_us = i * ptime_ms * 1000
        out += struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def pcmu_tone(seconds: float, freq: float = 1000.0, amplitude: int = 8000, ptime_ms: int = 20) -> list[bytes]:
    """μ-law payloads of a sine tone, ``ptime_ms`` each."""
    n = int(seconds * 8000)
    pcm = b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * freq * k / 8000))) for k in range(n))
    ulaw = audioop.lin2ulaw(pcm, 2)
    step = 8 * ptime_ms
    return [ulaw[i : i + step] for i in range(0, len(ulaw) - step + 1, step)]
