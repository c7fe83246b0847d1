"""What SRTP adds to a call's RTP path: protect + unprotect of a 20 ms G.711 packet, per suite.

A call carries 50 packets per second each way, so the extra CPU per call per second is
50 x (protect + unprotect). The packets go through ``media.srtp.SrtpStreams`` (libsrtp via
pylibsrtp), the code RtpSession uses; two streams with mirrored keys stand for the two ends.

    .venv/bin/python -m bench.srtp_bench [--packets N] [--rounds R]
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import struct
import time

from media.srtp import SUITES, SrtpKeys, SrtpStreams

PACKETS_PER_SECOND = 50  # 20 ms G.711 frames, each direction


def _packets(count: int) -> list[bytes]:
    payload = bytes(160)
    return [struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234) + payload for seq in range(count)]


def measure(suite: str, count: int) -> tuple[float, float]:
    """(µs per protect, µs per unprotect) over ``count`` packets of one stream."""
    length = SUITES[suite][1]
    a_key, b_key = secrets.token_bytes(length), secrets.token_bytes(length)
    ours, theirs = SrtpStreams(SrtpKeys(suite, a_key, b_key)), SrtpStreams(SrtpKeys(suite, b_key, a_key))
    plain = _packets(count)
    t0 = time.perf_counter()
    sealed = [ours.protect(p) for p in plain]
    t1 = time.perf_counter()
    opened = [theirs.unprotect(p) for p in sealed]
    t2 = time.perf_counter()
    assert opened == plain
    return (t1 - t0) / count * 1e6, (t2 - t1) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000, help="packets per round (one stream)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'suite':<26} {'protect µs':>11} {'unprotect µs':>13} {'CPU per call':>14}")
    for suite in SUITES:
        runs = [measure(suite, args.packets) for _ in range(args.rounds)]
        protect = statistics.median(r[0] for r in runs)
        unprotect = statistics.median(r[1] for r in runs)
        per_call_ms = PACKETS_PER_SECOND * (protect + unprotect) / 1000
        print(f"{suite:<26} {protect:>11.2f} {unprotect:>13.2f} {per_call_ms:>9.3f} ms/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
