#!/usr/bin/env python3
"""Branchline: the box. ``python run.py`` runs it; see ``python run.py --help``."""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import shlex
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("branchline")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # what [box] log_level accepts too
ROOT = Path(os.path.abspath(__file__)).parent  # not resolved: the banner prints paths the way they were reached


def port_number(text: str) -> int:
    """An argparse type: a TCP/UDP port the box can listen on."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1..65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (1..65535)")
    return port


def dtmf_keys(text: str) -> str:
    """An argparse type: keys a caller can press, 0-9 * # A-D."""
    from appliance.simulation import DTMF_DIGITS

    keys = text.strip().upper()
    bad = "".join(sorted(set(keys) - DTMF_DIGITS))
    if not keys or bad:
        raise argparse.ArgumentTypeError(f"{text!r} is not DTMF keys (0-9, *, #, A-D)")
    return keys


def add_box_options(parser: argparse.ArgumentParser, default: object) -> None:
    """The options every command shares, before or after its name.

    ``default`` is None on the top parser and SUPPRESS on the commands' parsers, so that a
    command's parser does not reset an option given before the command.
    """
    g = parser.add_argument_group("box options (before or after the command)")
    g.add_argument("--config", type=Path, default=default,
                   help="TOML config file (default: ./branchline.toml if present, else built-in defaults)")
    g.add_argument("--data", type=Path, default=default, help="data folder (overrides [box] data_dir)")
    g.add_argument("--sip-port", type=port_number, default=default, metavar="PORT",
                   help="SIP UDP/TCP port, 1..65535 (overrides [sip] port)")
    g.add_argument("--web-port", type=port_number, default=default, metavar="PORT",
                   help="agent console port, 1..65535 (overrides [web] port)")
    g.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=default, metavar="LEVEL",
                   help=f"{', '.join(LOG_LEVELS)} (any case; overrides [box] log_level)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run.py", description="Branchline contact centre box")
    add_box_options(p, None)
    common = argparse.ArgumentParser(add_help=False)
    add_box_options(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command")

    def command(parent: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=summary, description=summary, parents=[common])

    command(sub, "serve", "run the box (the default)")
    b = command(sub, "backup", "write a consistent snapshot of the data folder")
    b.add_argument("output", type=Path, help="the snapshot file to write (a .tar.gz), e.g. /tmp/box-2026-12-03.tar.gz")
    r = command(sub, "restore", "restore a snapshot into the data folder (box must be stopped)")
    r.add_argument("snapshot", type=Path,
                   help="a snapshot file written by 'run.py backup'; the current data folder is kept aside")
    command(sub, "tui", "open the site-admin terminal UI on the running box")
    sim = command(sub, "sim", "make the running box's simulated lines ring or receive an SMS")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    c = command(sim_sub, "call", "a caller rings the simulated gsm or analog line")
    c.add_argument("line", choices=("gsm", "analog"))
    c.add_argument("--from", dest="number", default="+447700900123", help="caller number ('' for withheld)")
    s = command(sim_sub, "sms", "an SMS arrives on the simulated GSM line")
    s.add_argument("text")
    s.add_argument("--from", dest="number", default="+447700900123")
    h = command(sim_sub, "hangup", "the caller on a simulated line hangs up")
    h.add_argument("line", choices=("gsm", "analog"))
    k = command(sim_sub, "keys", "the caller on a simulated line presses keys (DTMF), e.g. to try an IVR menu")
    k.add_argument("line", choices=("gsm", "analog"))
    k.add_argument("digits", type=dtmf_keys, help="keys pressed one after another: 0-9, *, #, A-D (quote * and #)")
    e = command(sim_sub, "callee", "how the far end of calls the box places on a simulated line behaves")
    e.add_argument("line", choices=("gsm", "analog"))
    e.add_argument("outcome", choices=("answer", "busy", "no_answer", "unreachable"))
    e.add_argument("--number", default=None, help="only for calls to this number (default: every number)")
    e.add_argument("--answer-after", dest="answer_after_s", type=float, default=None, help="seconds from dial to outcome")
    e.add_argument("--hangup-after", dest="hangup_after_s", type=float, default=None,
                   help="the callee hangs up this long after answering")
    return p.parse_args(argv)


def load(args: argparse.Namespace):
    from appliance.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"branchline: {exc}", file=sys.stderr)
        print("branchline: fix the file, or move it away to start with the built-in defaults", file=sys.stderr)
        raise SystemExit(2) from None
    if args.data:
        cfg = replace(cfg, data_dir=args.data)
    if args.sip_port is not None:
        cfg = replace(cfg, sip=replace(cfg.sip, port=args.sip_port))
    if args.web_port is not None:
        cfg = replace(cfg, web=replace(cfg.web, port=args.web_port))
    if args.log_level:
        cfg = replace(cfg, log_level=args.log_level)
    return cfg


def take_lock(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".branchline.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        print(f"branchline: another box (pid {other}) is already running on {data_dir}; stop it first", file=sys.stderr)
        raise SystemExit(1) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def tui_command(args: argparse.Namespace, executable: str | None = None, cwd: Path | None = None) -> str:
    """The command that opens the admin TUI on this box, typed from ``cwd``.

    The interpreter is the project's .venv one when that is what runs the box (``make run``
    creates it; a bare ``python`` may not exist or lack the packages), else ``python3``.
    """
    exe = Path(executable or sys.executable)
    cwd = cwd or Path.cwd()
    venv = ROOT / ".venv"
    if exe.parent.resolve().is_relative_to(venv.resolve()):  # .venv/bin/python is a symlink: compare folders
        python = _typed(venv / exe.parent.name / exe.name, cwd)
    else:
        python = "python3"
    words = [python, _typed(ROOT / "run.py", cwd), "tui"]
    for option, value in (("--config", args.config), ("--data", args.data)):
        if value is not None:
            words += [option, str(value)]  # as given: the TUI is opened from the same folder
    return shlex.join(words)


def _typed(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it is below it, else absolute."""
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)


def banner(box, tui: str) -> None:
    ep = box.endpoints
    lines = [f"Branchline is running (config: {box.cfg.source}, data: {box.cfg.data_dir})",
             f"  Agent console:  {ep.web_url}",
             f"  SIP:            udp {ep.sip_udp or '-'} / tcp {ep.sip_tcp or '-'} (call sip:support@127.0.0.1:{ep.sip_udp or ep.sip_tcp})"]
    demo = [a for a in box.cfg.agents if a.demo_password]
    if demo:
        lines.append("  Demo agents:    " + ", ".join(f"{a.id} / {a.demo_password}" for a in demo))
    lines.append(f"  Admin TUI:      {tui}")
    for line in lines:
        log.info("%s", line)
    if demo and box.cfg.web.bind in ("0.0.0.0", "::", ""):
        log.warning("the console listens on all interfaces with the demo passwords: set your own agents "
                    "in branchline.toml (see docs/branchline.example.toml) before connecting this box to a LAN")


def serve(cfg, args: argparse.Namespace) -> int:
    import uvloop

    from appliance.app import ListenError, run_box

    created = not cfg.data_dir.exists()
    lock = take_lock(cfg.data_dir)
    tui = tui_command(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_box(cfg, stop, on_ready=lambda box: banner(box, tui))

    try:
        uvloop.run(main())
    except OSError as exc:
        log.error("cannot start: %s", exc)
        if isinstance(exc, ListenError):
            log.error("%s", exc.hint)
        if created and not holds_data(cfg.data_dir):
            shutil.rmtree(cfg.data_dir)  # the lock goes with it; nobody else could have used the folder
            log.info("removed %s: this start created it and nothing was stored in it", cfg.data_dir)
        return 1
    finally:
        os.close(lock)
    return 0


def holds_data(data_dir: Path) -> bool:
    """Whether anything was stored in ``data_dir``: call records, messages or recordings.

    What a start writes before it serves (store metadata, an empty journal, the lock, ``run/``,
    a self-signed TLS pair) is not data: the next start writes it again.
    """
    from appliance.storage.journal import JOURNAL_FILE

    journal = data_dir / JOURNAL_FILE
    if journal.exists() and journal.stat().st_size:
        return True
    return any(p.is_file() for top in ("shards", "recordings") for p in (data_dir / top).rglob("*"))


def simulate(cfg, args: argparse.Namespace) -> int:
    """Ask the running box (local API) to drive one of its simulated lines."""
    import asyncio as aio

    from appliance.api.client import ApiUnavailable, SocketClient

    body = {"line": getattr(args, "line", "gsm"), "number": args.number if hasattr(args, "number") else None}
    if args.sim_command == "sms":
        body["text"] = args.text
    if args.sim_command == "keys":
        body["digits"] = args.digits
    if args.sim_command == "callee":
        body.update(outcome=args.outcome, answer_after_s=args.answer_after_s, hangup_after_s=args.hangup_after_s)

    async def go() -> tuple[int, str]:
        client = SocketClient(cfg.data_dir / "run")
        try:
            return await client.post_raw(f"/v1/sim/{args.sim_command}", body)
        finally:
            await client.close()

    try:
        status, text = aio.run(go())
    except ApiUnavailable as exc:
        print(f"branchline sim: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0 if status == 200 else 1


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = load(args)
    logging.basicConfig(level=cfg.log_level, format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    command = args.command or "serve"
    if command == "serve":
        return serve(cfg, args)
    if command == "backup":
        from appliance.storage import backup

        if not cfg.data_dir.exists():
            print(f"branchline: no data folder at {cfg.data_dir}; nothing to back up", file=sys.stderr)
            return 2
        report = backup(cfg.data_dir, args.output)
        log.info("snapshot written to %s (%d files, %d bytes, schema %d)", report.path, report.files, report.bytes,
                 report.schema_version)
        return 0
    if command == "restore":
        from appliance.storage import SchemaTooNewError, restore
        from appliance.storage.backup import SnapshotError

        take_lock(cfg.data_dir)  # refuses while a box runs on this folder
        try:
            moved = restore(args.snapshot, cfg.data_dir)
        except (SchemaTooNewError, SnapshotError, FileNotFoundError) as exc:
            print(f"branchline: restore refused: {exc}", file=sys.stderr)
            return 2
        log.info("restored %s into %s%s", args.snapshot, cfg.data_dir, f" (previous data kept in {moved})" if moved else "")
        return 0
    if command == "sim":
        return simulate(cfg, args)
    if command == "tui":
        from tui.__main__ import main as tui_main

        return tui_main(cfg)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
