"""SIP line benchmark: concurrent G.711 calls on one core with RTP flowing both ways.

    .venv/bin/python -m bench.sip_bench                       # 0 (noise floor), 50..400 calls, 8 s each
    .venv/bin/python -m bench.sip_bench --levels 100,200 --hold 5

Method (also in docs/benchmarks.md, "SIP"):
1. The system under test is a child process pinned to CPU 0 running uvloop: one ``SipLine``
   (UDP, guard on with 127.0.0.1 trusted) whose handler answers every INVITE at once, and a
   single 20 ms "bridge" tick that, for every call, takes one frame from the call's RTP leg
   (silence when none) and writes it back (decode + encode + send, as the real bridge does).
   An event-loop lag probe sleeps to 10 ms deadlines and records how late it wakes.
2. This process (pinned to CPU 1) is the far end: it places calls with real INVITE/200/ACK
   over UDP, then sends one 20 ms PCMU packet per call every 20 ms from each call's own RTP
   socket and counts the packets that come back.
3. Calls are added level by level (they stay up). At each level the child measures for
   ``--hold`` seconds: p50/p99/max loop lag, CPU share of its core, RTP packets in/out.
4. Capacity = the highest level whose p99 lag stays below 20 ms with >= 99 % of the
   expected RTP returned.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from drivers.sip.message import SipRequest, SipResponse, parse_message, response_bytes  # noqa: E402

FRAME_S = 0.020
LAG_PROBE_S = 0.010  # lag probe period: fine enough to see a 20 ms stall
LAG_TARGET_MS = 20.0
SETUP_RATE_CPS = 50  # how fast calls are added between levels
CALL_SETUP_TIMEOUT_S = 10.0  # a 200 on loopback takes ms; a stalled SUT is a failed level
PCMU_SILENCE = b"\xff" * 160


# ----------------------------------------------------------------------------- system under test
async def sut_main() -> None:
    from appliance.lines import HangupCause
    from drivers.sip.line import SipLine, SipLineConfig

    calls: set = set()
    silence = b"\x00" * 320

    async def handler(call) -> None:
        await call.answer()
        calls.add(call)
        try:
            await call.wait_ended()
        finally:
            calls.discard(call)

    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False,
                                 trusted_networks=("127.0.0.0/8",)), handler)
    await line.start()
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def bridge() -> None:
        deadline = loop.time()
        while True:
            deadline += FRAME_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            for call in list(calls):
                audio = call.audio
                audio.write_frame(audio.read_frame_nowait() or silence)
            if loop.time() - deadline > FRAME_S:
                deadline = loop.time()  # after a stall, skip the missed ticks (no burst of catch-up frames)

    async def probe() -> None:
        deadline = loop.time()
        while True:
            deadline += LAG_PROBE_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            late = loop.time() - deadline
            lags.append(late)
            if late > LAG_PROBE_S:
                deadline = loop.time()  # do not try to catch up a long stall

    tasks = [loop.create_task(bridge(), name="bench-bridge"), loop.create_task(probe(), name="bench-lag")]
    print(json.dumps({"port": line.udp_port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line_text := (await reader.readline()).decode().strip():
        cmd, _, arg = line_text.partition(" ")
        if cmd == "quit":
            break
        hold = float(arg)
        stats0 = [c.audio.statistics() for c in calls]
        rx0, tx0 = sum(s.received for s in stats0), sum(s.sent for s in stats0)
        lags.clear()
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(hold)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        stats = [c.audio.statistics() for c in calls]
        ms = sorted(x * 1000 for x in lags)
        print(json.dumps({
            "calls": len(calls), "p50_ms": statistics.median(ms), "p99_ms": ms[int(len(ms) * 0.99) - 1],
            "max_ms": ms[-1], "cpu_pct": 100 * cpu / wall,
            "rtp_in_pps": (sum(s.received for s in stats) - rx0) / wall,
            "rtp_out_pps": (sum(s.sent for s in stats) - tx0) / wall,
        }), flush=True)
    for task in tasks:
        task.cancel()
    for call in list(calls):
        await call.hangup(HangupCause.SHUTDOWN)
    await line.stop()


# ----------------------------------------------------------------------------- far end
class _Rtp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr) -> None:
        self.received += 1


class _Sip(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[SipResponse]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            msg = parse_message(data)
        except Exception:
            return
        if isinstance(msg, SipRequest) and msg.method == "BYE":
            self.transport.sendto(response_bytes(msg, 200), addr)
            return
        if isinstance(msg, SipResponse) and msg.status >= 200:
            fut = self.waiting.pop(msg.call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)


class FarEnd:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.calls: list[tuple[asyncio.DatagramTransport, _Rtp, tuple[str, int]]] = []
        self.sip: asyncio.DatagramTransport | None = None
        self.proto = _Sip()
        self.sip_port = 0
        self.sent = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.sip, _ = await loop.create_datagram_endpoint(lambda: self.proto, local_addr=("127.0.0.1", 0))
        self.sip_port = self.sip.get_extra_info("sockname")[1]

    async def add_call(self) -> None:
        loop = asyncio.get_running_loop()
        rtp_t, rtp_p = await loop.create_datagram_endpoint(_Rtp, local_addr=("127.0.0.1", 0))
        rtp_port = rtp_t.get_extra_info("sockname")[1]
        call_id, tag, branch = secrets.token_hex(8), secrets.token_hex(4), "z9hG4bK" + secrets.token_hex(8)
        sdp = (f"v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
        host, port = self.target
        common = (f"From: <sip:bench@127.0.0.1:{self.sip_port}>;tag={tag}\r\nCall-ID: {call_id}\r\n"
                  f"Max-Forwards: 70\r\n")
        invite = (f"INVITE sip:100@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={branch}"
                  f"\r\n{common}To: <sip:100@{host}:{port}>\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:bench@127.0.0.1:{self.sip_port}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        fut: asyncio.Future[SipResponse] = loop.create_future()
        self.proto.waiting[call_id] = fut
        self.sip.sendto(invite.encode(), self.target)
        async with asyncio.timeout(CALL_SETUP_TIMEOUT_S):
            ok = await fut
        if ok.status != 200:
            raise RuntimeError(f"call refused with {ok.status}")
        ack = (f"ACK sip:100@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.sip_port};"
               f"branch=z9hG4bK{secrets.token_hex(8)}\r\n{common}To: {ok.headers.get('To')}\r\nCSeq: 1 ACK\r\n"
               f"Content-Length: 0\r\n\r\n")
        self.sip.sendto(ack.encode(), self.target)
        media = ok.body.decode().split("m=audio ")[1].split()[0]
        self.calls.append((rtp_t, rtp_p, ("127.0.0.1", int(media))))

    async def pump(self) -> None:
        """One 20 ms PCMU packet per call per tick, deadline-paced."""
        loop = asyncio.get_running_loop()
        seq, ts, deadline = 0, 0, loop.time()
        while True:
            deadline += FRAME_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
            header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big")
            for index, (transport, _, remote) in enumerate(self.calls):
                transport.sendto(header + index.to_bytes(4, "big") + PCMU_SILENCE, remote)
            self.sent += len(self.calls)
            if loop.time() - deadline > FRAME_S:
                deadline = loop.time()

    def received(self) -> int:
        return sum(p.received for _, p, _ in self.calls)


async def driver(levels: list[int], hold: float) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sip_bench", "--sut", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    results: list[dict] = []
    try:
        port = json.loads(await proc.stdout.readline())["port"]
        far = FarEnd(("127.0.0.1", port))
        await far.open()
        pump = asyncio.get_running_loop().create_task(far.pump(), name="bench-pump")
        for level in levels:
            while len(far.calls) < level:
                await far.add_call()
                await asyncio.sleep(1 / SETUP_RATE_CPS)
            await asyncio.sleep(1.0)  # let the last calls' media settle
            rx0, tx0, t0 = far.received(), far.sent, time.monotonic()
            proc.stdin.write(f"measure {hold}\n".encode())
            await proc.stdin.drain()
            row = json.loads(await proc.stdout.readline())
            wall = time.monotonic() - t0
            row["far_sent_pps"] = (far.sent - tx0) / wall
            row["far_received_pps"] = (far.received() - rx0) / wall
            row["returned_pct"] = 100 * (far.received() - rx0) / max(1, far.sent - tx0) if level else 100.0
            row["loadavg"] = os.getloadavg()[0]
            results.append(row)
            per_call = row["cpu_pct"] * 10 / row["calls"] if row["calls"] else 0.0  # ms of CPU per call-second
            print(f"{row['calls']:4d} calls  lag p50 {row['p50_ms']:5.1f} p99 {row['p99_ms']:5.1f} "
                  f"max {row['max_ms']:6.1f} ms  cpu {row['cpu_pct']:5.1f} % ({per_call:4.2f} ms/call/s)  "
                  f"rtp in {row['rtp_in_pps']:6.0f} out {row['rtp_out_pps']:6.0f} pps  "
                  f"returned {row['returned_pct']:5.1f} %  loadavg {row['loadavg']:.1f}", flush=True)
        pump.cancel()
        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        async with asyncio.timeout(15.0):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return results


def _pin(cpu: int) -> None:
    try:
        if cpu < os.cpu_count():
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.sip_bench")
    parser.add_argument("--sut", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--levels", default="0,50,100,150,200,250,300,350,400")
    parser.add_argument("--hold", type=float, default=8.0)
    args = parser.parse_args(argv)
    import uvloop

    if args.sut:
        _pin(0)
        uvloop.run(sut_main())
        return 0
    _pin(1)
    levels = [int(x) for x in args.levels.split(",")]
    results = uvloop.run(driver(levels, args.hold))
    ok = [r for r in results if r["p99_ms"] < LAG_TARGET_MS and r["returned_pct"] >= 99.0]
    best = max((r["calls"] for r in ok), default=0)
    print(f"capacity: {best} concurrent G.711 calls on one core with p99 loop lag < {LAG_TARGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
