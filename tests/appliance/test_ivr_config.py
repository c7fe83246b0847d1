"""[[inbound]] routes and [[menus]] in the config file: parsed, matched, and refused clearly."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config
from appliance.ivr import MenuConfig, Target, TargetKind
from appliance.ivr_config import InboundRule, line_matches, route

ROOT = Path(__file__).resolve().parents[2]
QUEUES = """
[[queues]]
id = "support"
[[queues]]
id = "sales"
"""
MENUS = """
[[menus]]
id = "main"
prompt = "/srv/prompts/main.wav"
options = { "1" = "queue:support", "2" = "menu:sales-menu", "0" = "repeat", "#" = "hangup" }
timeout_s = 4
retries = 1
invalid_prompt = "/srv/prompts/sorry.wav"

[[menus]]
id = "sales-menu"
default = "queue:sales"
[menus.options]
"1" = "queue:sales"
"*" = "menu:main"
"""


def load(tmp_path: Path, text: str):
    f = tmp_path / "b.toml"
    f.write_text(QUEUES + text)
    return load_config(f)


def test_menus_and_inbound_rules_are_parsed(tmp_path: Path) -> None:
    cfg = load(tmp_path, MENUS + """
[[inbound]]
name = "sales line"
called = "sales|2\\\\d\\\\d"
queue = "sales"
[[inbound]]
line = "gsm:*"
menu = "main"
""")
    main, sales = cfg.menus
    assert main == MenuConfig(
        "main", "/srv/prompts/main.wav",
        (("1", Target(TargetKind.QUEUE, "support")), ("2", Target(TargetKind.MENU, "sales-menu")),
         ("0", Target(TargetKind.REPEAT)), ("#", Target(TargetKind.HANGUP))),
        timeout_s=4.0, retries=1, invalid_prompt="/srv/prompts/sorry.wav", default=None,
    )
    assert (sales.timeout_s, sales.retries, sales.default) == (5.0, 2, Target(TargetKind.QUEUE, "sales"))
    assert cfg.inbound == (
        InboundRule(Target(TargetKind.QUEUE, "sales"), called="sales|2\\d\\d", name="sales line"),
        InboundRule(Target(TargetKind.MENU, "main"), line="gsm:*"),
    )


def test_no_rules_no_menus_is_todays_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")
    assert cfg.inbound == () and cfg.menus == ()


def test_route_first_match_wins() -> None:
    rules = (
        InboundRule(Target(TargetKind.QUEUE, "sales"), called="sales|2\\d\\d"),
        InboundRule(Target(TargetKind.MENU, "main"), line="gsm"),
        InboundRule(Target(TargetKind.QUEUE, "support"), called="sales", line="analog:0"),
    )
    assert route(rules, "sales", "sip") is rules[0]
    assert route(rules, "205", "gsm:356938035643809") is rules[0]  # both match: the first wins
    assert route(rules, "2055", "sip") is None  # the whole value must match
    assert route(rules, None, "gsm:356938035643809") is rules[1]  # GSM often has no called number
    assert route(rules, "support", "analog:0") is None
    assert route((), "sales", "sip") is None


@pytest.mark.parametrize("pattern, line_id, hit", [
    ("sip", "sip", True), ("gsm", "gsm:1234", True), ("gsm:*", "gsm:1234", True), ("gsm:1234", "gsm:1234", True),
    ("gsm:1234", "gsm:12345", False), ("analog", "sip", False), ("gs", "gsm:1", False), ("analog:?", "analog:0", True),
])
def test_line_patterns(pattern: str, line_id: str, hit: bool) -> None:
    assert line_matches(pattern, line_id) is hit


@pytest.mark.parametrize("text, words", [
    ("[[inbound]]\ncalled = 'x'\n", "[[inbound]] rule 1 needs exactly one of queue"),
    ("[[inbound]]\nqueue = 'sales'\nmenu = 'main'\n", "[[inbound]] rule 1 needs exactly one of queue"),
    ("[[inbound]]\nqueue = 'nope'\n", "[[inbound]] rule 1: queue names unknown queue 'nope'"),
    ("[[inbound]]\nname = 'gsm'\nmenu = 'nope'\n", "[[inbound]] rule 1 (gsm): menu names unknown menu 'nope' (menus: none"),
    ("[[inbound]]\ncalled = '('\nqueue = 'sales'\n", "called '(' is not a valid regular expression"),
    ("[[inbound]]\nline = 5\nqueue = 'sales'\n", "[[inbound]] rule 1: line must be a string"),
    ("[[inbound]]\nline = 'gsmm'\nqueue = 'sales'\n", "[[inbound]] rule 1: line 'gsmm' can match no line"),
    ("[[inbound]]\nline = 'trunk'\nqueue = 'sales'\n", "line 'trunk' can match no line: start it with a kind"),
    ("[[inbound]]\nqueue = 'sales'\ncaller = '1'\n", "[[inbound]] rule 1 has unknown key(s): caller"),
    ("[[menus]]\noptions = { '1' = 'queue:sales' }\n", "[[menus]] entry 1 needs an id"),
    ("[[menus]]\nid = 'm'\n", "menu m: options must be a table"),
    ("[[menus]]\nid = 'm'\noptions = { '12' = 'queue:sales' }\n", "menu m: option key '12' must be one of 0-9, * or #"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:nope' }\n", "menu m: option '1' names unknown queue 'nope'"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'menu:other' }\n", "menu m: option '1' names unknown menu 'other'"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'sales' }\n", "menu m: option '1' 'sales' is not \"queue:<id>\""),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\ndefault = 'repeat'\n", "menu m: default cannot be \"repeat\""),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\ntimeout_s = 0\n", "menu m: timeout_s must be"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\nretries = -1\n", "menu m: retries must be"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\nprompt = 3\n", "menu m: prompt must be a path"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\ntimeout = 3\n", "menu m has unknown key(s): timeout"),
    ("[[menus]]\nid = 'm'\noptions = { '1' = 'queue:sales' }\n[[menus]]\nid = 'm'\noptions = { '1' = 'hangup' }\n",
     "two [[menus]] share the id 'm'"),
    ("[[menus]]\nid = 'a'\noptions = { '1' = 'hangup' }\ndefault = 'menu:b'\n"
     "[[menus]]\nid = 'b'\noptions = { '1' = 'hangup' }\ndefault = 'menu:a'\n", "menu a: the defaults a -> b -> a form a loop"),
])
def test_broken_routes_and_menus_are_refused_naming_the_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert words in str(info.value) and "b.toml" in str(info.value)


def test_keys_may_loop_between_menus(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[[menus]]\nid = 'a'\noptions = { '1' = 'menu:b' }\n[[menus]]\nid = 'b'\noptions = { '1' = 'menu:a' }\n")
    assert [m.id for m in cfg.menus] == ["a", "b"]


def test_run_py_exits_2_with_one_line_for_a_broken_menu(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(QUEUES + "[[menus]]\nid = 'main'\noptions = { '1' = 'queue:billing' }\n")
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--config", str(f)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "menu main: option '1' names unknown queue 'billing'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_commented_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "branchline.example.toml").read_text()
    block = text[text.index("# Inbound routes and IVR menus"):]
    uncommented = "\n".join(line[2:] for line in block.splitlines() if re.match(r"# (\[|[a-z_]+ = )", line))
    f = tmp_path / "example.toml"
    f.write_text(text + "\n" + uncommented + "\n")
    cfg = load_config(f)
    assert [r.name for r in cfg.inbound] == ["sales line", "everything else"]
    assert [m.id for m in cfg.menus] == ["main", "sales"] and cfg.menus[0].default == Target(TargetKind.QUEUE, "support")
