"""``run.py``'s command line: shared box options on every command, checked ports and log levels, the TUI hint."""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import run

ROOT = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_S = 60.0  # interpreter start + imports on a loaded 2-core machine

COMMANDS = (["serve"], ["tui"], ["backup", "out.tar.gz"], ["restore", "in.tar.gz"], ["sim", "call", "gsm"],
            ["sim", "sms", "hi"], ["sim", "hangup", "analog"], ["sim", "callee", "gsm", "busy"], ["sim", "keys", "gsm", "12#"])
BOX_OPTIONS = ["--config", "c.toml", "--data", "d", "--sip-port", "5070", "--web-port", "8081", "--log-level", "debug"]


def run_py(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``run.py args`` as the operator types it, to completion."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], check=False, capture_output=True, text=True,
                          timeout=EXIT_TIMEOUT_S, cwd=cwd, stdin=subprocess.DEVNULL)


def box_options(ns: argparse.Namespace) -> tuple:
    return ns.config, ns.data, ns.sip_port, ns.web_port, ns.log_level


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_box_options_are_accepted_before_and_after_every_command(cmd: list[str]) -> None:
    expected = (Path("c.toml"), Path("d"), 5070, 8081, "DEBUG")
    assert box_options(run.parse_args([*BOX_OPTIONS, *cmd])) == expected
    assert box_options(run.parse_args([*cmd, *BOX_OPTIONS])) == expected


def test_an_option_given_before_the_command_is_not_reset_by_the_command() -> None:
    ns = run.parse_args(["--data", "d", "--sip-port", "5070", "tui", "--config", "c.toml"])
    assert box_options(ns) == (Path("c.toml"), Path("d"), 5070, None, None)
    ns = run.parse_args(["--data", "before", "sim", "--web-port", "8081", "call", "gsm", "--sip-port", "5070"])
    assert box_options(ns) == (None, Path("before"), 5070, 8081, None)
    assert run.parse_args(["--data", "before", "serve", "--data", "after"]).data == Path("after")
    assert box_options(run.parse_args(["tui"])) == (None, None, None, None, None)


@pytest.mark.parametrize("cmd", [c[:2] if c[0] == "sim" else c[:1] for c in COMMANDS], ids=" ".join)
def test_every_command_help_lists_the_box_options(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run.parse_args([*cmd, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--config", "--data", "--sip-port", "--web-port", "--log-level"))


@pytest.mark.parametrize(("cmd", "words"), [(["backup"], "the snapshot file to write"),
                                            (["restore"], "a snapshot file written by 'run.py backup'")])
def test_backup_and_restore_explain_their_file_argument(cmd: list[str], words: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run.parse_args([*cmd, "--help"])
    assert words in capsys.readouterr().out


@pytest.mark.parametrize(("args", "words"), [
    (["--sip-port", "99999"], "argument --sip-port: port 99999 is out of range (1..65535)"),
    (["tui", "--sip-port", "0"], "argument --sip-port: port 0 is out of range (1..65535)"),
    (["--web-port", "-1"], "argument --web-port: port -1 is out of range (1..65535)"),
    (["serve", "--web-port", "http"], "argument --web-port: 'http' is not a port number (1..65535)"),
    (["--log-level", "garbage"], "argument --log-level: invalid choice: 'GARBAGE'"),
    (["serve", "--log-level", "verbose"], "argument --log-level: invalid choice: 'VERBOSE'"),
])
def test_bad_ports_and_log_levels_are_argparse_errors(args: list[str], words: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run.parse_args(args)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error"])
def test_log_level_is_case_insensitive(level: str) -> None:
    assert run.parse_args(["--log-level", level]).log_level == level.upper()


@pytest.mark.parametrize(("args", "words"), [
    (["--sip-port", "99999"], "port 99999 is out of range"),
    (["serve", "--log-level", "garbage"], "invalid choice: 'GARBAGE' (choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')"),
])
def test_run_py_refuses_bad_options_in_one_line_without_a_traceback(tmp_path: Path, args: list[str],
                                                                     words: str) -> None:
    proc = run_py(["--data", str(tmp_path / "data"), *args], tmp_path)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_tui_takes_data_after_the_command(tmp_path: Path) -> None:
    proc = run_py(["tui", "--data", str(tmp_path)], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == f"branchline tui: the box is not running (no API socket at {tmp_path / 'run' / 'api.sock'})\n"


# --- the banner's TUI command -------------------------------------------------------------------
VENV_PYTHON = str(ROOT / ".venv" / "bin" / "python")


def test_tui_command_uses_the_project_venv_relative_to_the_current_folder() -> None:
    assert run.tui_command(run.parse_args([]), VENV_PYTHON, ROOT) == ".venv/bin/python run.py tui"
    assert run.tui_command(run.parse_args([]), VENV_PYTHON, ROOT.parent) == (
        f"{ROOT.name}/.venv/bin/python {ROOT.name}/run.py tui")


def test_tui_command_is_absolute_from_elsewhere_and_python3_outside_the_venv(tmp_path: Path) -> None:
    assert run.tui_command(run.parse_args([]), VENV_PYTHON, tmp_path) == f"{VENV_PYTHON} {ROOT / 'run.py'} tui"
    assert run.tui_command(run.parse_args([]), "/usr/bin/python3.11", ROOT) == "python3 run.py tui"


def test_tui_command_keeps_the_data_and_config_given_to_the_box() -> None:
    args = run.parse_args(["--config", "my box.toml", "serve", "--data", "/srv/bl data", "--sip-port", "5070"])
    cmd = run.tui_command(args, VENV_PYTHON, ROOT)
    assert shlex.split(cmd) == [".venv/bin/python", "run.py", "tui", "--config", "my box.toml", "--data", "/srv/bl data"]


def test_the_printed_tui_command_runs(tmp_path: Path) -> None:
    args = run.parse_args(["--data", str(tmp_path / "data")])
    words = shlex.split(run.tui_command(args, sys.executable, ROOT))
    proc = subprocess.run([*words, "--help"], check=False, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage: run.py tui" in proc.stdout
