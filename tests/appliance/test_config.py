"""Config loading: embedded defaults, a valid file, and broken files refused clearly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, embedded_default, load_config, verify_password

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_default_has_one_queue_two_demo_agents() -> None:
    cfg = embedded_default()
    assert [q.id for q in cfg.queues] == ["support"]
    assert [a.id for a in cfg.agents] == ["alice", "bob"]
    assert cfg.sip.port == 5060 and cfg.sip.transports == ("udp", "tcp")
    assert cfg.web.port == 8080 and cfg.data_dir == Path("var")
    for agent in cfg.agents:
        assert agent.check_password(agent.demo_password)
        assert not agent.check_password("wrong")


def test_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text(
        """
[box]
data_dir = "/srv/bl"
[sip]
port = 5070
[acd]
ring_timeout_s = 7
[[queues]]
id = "sales"
name = "Sales"
[[agents]]
id = "zoe"
name = "Zoe"
password = "pw"
queues = ["sales"]
"""
    )
    cfg = load_config(f)
    assert cfg.sip.port == 5070 and cfg.acd.ring_timeout_s == 7.0
    assert cfg.data_dir == Path("/srv/bl")
    assert [q.id for q in cfg.queues] == ["sales"]
    assert cfg.agents[0].id == "zoe" and verify_password("pw", cfg.agents[0].password_hash)
    assert cfg.agents[0].demo_password is None


@pytest.mark.parametrize(
    "text, words",
    [
        ("[sip\nport=1", "not valid TOML"),
        ("[sip]\nport = \"five\"", "port must be int"),
        ("[sip]\nprot = 5060", "unknown key(s): prot"),
        ("[nonsense]\na=1", "unknown section(s): nonsense"),
        ("[[agents]]\nid='x'\npassword='p'\nqueues=['nope']", "unknown queue(s): nope"),
        ("[[agents]]\nid='x'", "needs password"),
        ("[sip]\nrtp_port_min = 30000", "rtp_port_min 30000 .. rtp_port_max 20000 is not a usable range"),
        ("[sip]\nrtp_port_min = 100\nrtp_port_max = 200", "is not a usable range"),
        ("[sip]\nrtp_port_min = 20000\nrtp_port_max = 20001", "is not a usable range"),
    ],
)
def test_broken_files_are_refused_with_a_clear_message(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert words in str(info.value) and str(f) in str(info.value)


def test_run_py_refuses_broken_config_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[sip]\nport = 99999\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(f)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "port 99999 is out of range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_example_config_in_docs_is_valid() -> None:
    cfg = load_config(ROOT / "docs" / "branchline.example.toml")
    assert cfg.sip.port == 5060 and cfg.sip.guard and cfg.agents[0].id == "alice"
    assert cfg.simulators.gsm and cfg.simulators.analog


def test_box_section_types_are_checked(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[box]\ndata_dir = 5\n")
    with pytest.raises(ConfigError, match="data_dir must be a string"):
        load_config(f)
