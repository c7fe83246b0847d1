"""Box configuration: a TOML file, or the embedded defaults when there is none.

Validated once at start-up into frozen dataclasses. A broken file is refused with
one clear message that names the file and the problem; the box never starts on a
half-understood configuration.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.dialplan import DEFAULT_RULES, DialPlanError, DialRule, parse_rules
from appliance.ivr import MenuConfig
from appliance.ivr_config import InboundRule, IvrConfigError, parse_inbound, parse_menus

DEFAULT_CONFIG_NAME = "branchline.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    bind: str = "0.0.0.0"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")  # add "tls" for SIP over TLS
    tls_port: int = 5061
    tls_cert: str = ""  # PEM paths; both empty: a self-signed pair kept in <data_dir>/tls/
    tls_key: str = ""
    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    sdp_address: str = ""  # address we put in SDP; empty = the address the INVITE arrived on
    numbers: tuple[str, ...] = ()  # called numbers we take calls for; empty = any
    users: tuple = ()  # desk phones: [["201", "password"], ...] (plain text for now)
    realm: str = "branchline"
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    register_min_expires: int = 60
    register_max_expires: int = 3600
    qualify_s: float = 25.0  # OPTIONS to desk phones registered over UDP (NAT keepalive, reachability); 0 = off
    guard: bool = True  # rate limits and scanner bans
    rate_limit_per_s: float = 100.0
    rate_limit_burst: int = 200
    ban_after_failures: int = 10
    ban_window_s: float = 60.0
    ban_s: float = 300.0
    trusted_networks: tuple[str, ...] = ()  # e.g. the carrier's SBC: never limited or banned
    trunk_registrar: str = ""  # "host:port" of the provider's registrar; empty = no trunk
    trunk_username: str = ""
    trunk_password: str = ""
    trunk_domain: str = ""
    trunk_expires: int = 600
    trunk_register: bool = True  # false: an IP-authenticated trunk used for calls only (no REGISTER)
    trunk_caller_id: str = ""  # number presented on calls through the trunk; empty = trunk_username
    trunk_caller_name: str = ""  # display name presented; empty = none
    trunk_presentation: str = "allowed"  # "allowed" | "withheld" (anonymous From, real number in P-Asserted-Identity)


@dataclass(frozen=True, slots=True)
class WebConfig:
    bind: str = "0.0.0.0"
    port: int = 8080
    ice_host_addresses: tuple[str, ...] = ()  # pin WebRTC host candidates (e.g. the LAN address); empty = all


@dataclass(frozen=True, slots=True)
class AcdConfig:
    ring_timeout_s: float = 15.0  # an offer rings this long before moving to the next agent
    wrapup_s: float = 30.0  # timed wrap-up after each call; the agent can end it early
    max_queue_wait_s: float = 900.0  # then the caller is told no agent is available
    early_media_max_s: float = 120.0  # answer the line after this long in queue (carrier timers)
    pause_on_missed_offer: bool = True  # RONA: an agent who lets an offer time out is paused
    agent_reconnect_s: float = 30.0  # an agent whose audio drops mid-call may reconnect this long


@dataclass(frozen=True, slots=True)
class QueueConfig:
    id: str
    name: str
    ringback_s: float = 4.0  # ringback before hold music
    hold_music: str = ""  # WAV path; empty = the built-in tune
    dispositions: tuple[str, ...] = ("resolved", "follow-up", "escalated", "wrong number")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    name: str
    password_hash: str  # "scrypt$<salt hex>$<hash hex>"
    queues: tuple[str, ...] = ()
    demo_password: str | None = None  # only for the embedded demo agents, printed at start
    phone: str = ""  # SIP extension of the agent's desk phone ([sip] users); the agent may take calls there

    def check_password(self, password: str) -> bool:
        return verify_password(password, self.password_hash)


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class StorageConfig:
    encryption_key: str = ""  # hex AES key (32, 48 or 64 hex digits) to encrypt recordings at rest
    min_free_mb: int = 512  # under this much free disk, new recordings are refused (calls go on)
    records_days: float = 730.0  # call/SMS/chat records are kept this long (0 = forever)
    recordings_days: float = 90.0  # recordings are kept this long (0 = forever)
    retention_interval_h: float = 6.0

    def key_bytes(self) -> bytes | None:
        return bytes.fromhex(self.encryption_key) if self.encryption_key else None


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    gsm: bool = True  # start a simulated GSM modem when no real one is configured
    analog: bool = True  # start a simulated analog line when no real one is configured


@dataclass(frozen=True, slots=True)
class BoxConfig:
    data_dir: Path = Path("var")
    branch: str = "box"
    country: str = ""  # ISO 3166 region for national numbers ("GB", "US"); empty = only +E.164
    log_level: str = "INFO"
    sip: SipConfig = SipConfig()
    web: WebConfig = WebConfig()
    acd: AcdConfig = AcdConfig()
    recording: RecordingConfig = RecordingConfig()
    storage: StorageConfig = StorageConfig()
    simulators: SimulatorConfig = SimulatorConfig()
    queues: tuple[QueueConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    gsm: tuple[dict[str, Any], ...] = ()  # real GSM modems (validated by the GSM driver)
    analog: tuple[dict[str, Any], ...] = ()  # real analog voice modems
    dial_plan: tuple[DialRule, ...] = DEFAULT_RULES  # which line carries an agent's outbound call
    inbound: tuple[InboundRule, ...] = ()  # which queue or menu takes a call; none: the first queue
    menus: tuple[MenuConfig, ...] = ()  # IVR menus
    source: str = "embedded defaults"


# --- passwords -------------------------------------------------------------------------
_SCRYPT = dict(n=2**14, r=8, p=1)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


# --- defaults --------------------------------------------------------------------------
DEMO_AGENTS = (("alice", "Alice Martin", "alice-demo"), ("bob", "Bob Okafor", "bob-demo"))


def embedded_default() -> BoxConfig:
    queue = QueueConfig(id="support", name="Support")
    agents = tuple(
        AgentConfig(id=i, name=n, password_hash=hash_password(p), queues=("support",), demo_password=p)
        for i, n, p in DEMO_AGENTS
    )
    return BoxConfig(queues=(queue,), agents=agents)


# --- loading ---------------------------------------------------------------------------
def load_config(path: Path | None) -> BoxConfig:
    """Load ``path``; with None, use ./branchline.toml when present, else the embedded defaults."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.exists():
            return embedded_default()
        path = candidate
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return replace(cfg, source=str(path))


def _section(raw: dict[str, Any], name: str, cls: type, **conv: Any) -> Any:
    data = raw.get(name, {})
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"[{name}] has unknown key(s): {', '.join(sorted(unknown))}")
    values = {}
    defaults = cls()
    for key, value in data.items():
        want = type(getattr(defaults, key))
        if want is tuple and isinstance(value, list):
            value = tuple(value)
        elif want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want):
            raise ConfigError(f"[{name}] {key} must be {want.__name__}, not {type(value).__name__}")
        values[key] = value
    return cls(**values)


def parse_config(raw: dict[str, Any]) -> BoxConfig:
    box = raw.get("box", {})
    if not isinstance(box, dict):
        raise ConfigError("[box] must be a table")
    unknown_box = set(box) - {"data_dir", "branch", "country", "log_level"}
    if unknown_box:
        raise ConfigError(f"[box] has unknown key(s): {', '.join(sorted(unknown_box))}")
    for key in ("data_dir", "branch", "country", "log_level"):
        if key in box and not isinstance(box[key], str):
            raise ConfigError(f"[box] {key} must be a string, not {type(box[key]).__name__}")
    if str(box.get("log_level", "INFO")).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("[box] log_level must be DEBUG, INFO, WARNING or ERROR")
    unknown_top = set(raw) - {"box", "sip", "web", "acd", "recording", "storage", "simulators", "queues", "agents", "gsm", "analog",
                               "dial_plan", "inbound", "menus"}
    if unknown_top:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown_top))}")
    sip = _section(raw, "sip", SipConfig)
    if not (0 <= sip.port <= 65535):
        raise ConfigError(f"[sip] port {sip.port} is out of range")
    if sip.qualify_s < 0 or 0 < sip.qualify_s < 5:
        raise ConfigError(f"[sip] qualify_s {sip.qualify_s} must be 0 (off) or at least 5 seconds")
    if not (1024 <= sip.rtp_port_min and sip.rtp_port_min + 2 <= sip.rtp_port_max <= 65535):
        raise ConfigError(f"[sip] rtp_port_min {sip.rtp_port_min} .. rtp_port_max {sip.rtp_port_max} is not a usable "
                          "range: 1024 <= min, min + 2 <= max <= 65535 (each call takes an even port)")
    if not set(sip.transports) <= {"udp", "tcp", "tls"}:
        raise ConfigError("[sip] transports may contain only \"udp\", \"tcp\" and \"tls\"")
    if bool(sip.tls_cert) != bool(sip.tls_key):
        raise ConfigError("[sip] give both tls_cert and tls_key, or neither (a self-signed pair is made)")
    if not all(isinstance(u, (list, tuple)) and len(u) == 2 for u in sip.users):
        raise ConfigError('[sip] users must be a list of ["extension", "password"] pairs')
    if sip.trunk_presentation not in ("allowed", "withheld"):
        raise ConfigError('[sip] trunk_presentation must be "allowed" or "withheld"')
    web = _section(raw, "web", WebConfig)
    acd = _section(raw, "acd", AcdConfig)
    if acd.ring_timeout_s <= 0 or acd.wrapup_s < 0:
        raise ConfigError("[acd] ring_timeout_s must be > 0 and wrapup_s >= 0")
    queues = tuple(_queue(q) for q in _table_list(raw, "queues")) or embedded_default().queues
    queue_ids = {q.id for q in queues}
    agents_raw = _table_list(raw, "agents")
    agents = tuple(_agent(a, queue_ids) for a in agents_raw) if agents_raw else embedded_default().agents
    if len({a.id for a in agents}) != len(agents):
        raise ConfigError("two agents share the same id")
    extensions = {str(u[0]) for u in sip.users}
    for a in agents:
        if a.phone and a.phone not in extensions:
            raise ConfigError(f"agent {a.id}: phone {a.phone!r} is not a [sip] users extension")
    try:
        dial_plan = parse_rules(_table_list(raw, "dial_plan"))
    except DialPlanError as exc:
        raise ConfigError(str(exc)) from None
    try:
        menus = parse_menus(_table_list(raw, "menus"), queue_ids)
        inbound = parse_inbound(_table_list(raw, "inbound"), queue_ids, {m.id for m in menus})
    except IvrConfigError as exc:
        raise ConfigError(str(exc)) from None
    return BoxConfig(
        data_dir=Path(str(box.get("data_dir", "var"))),
        branch=str(box.get("branch", "box")),
        country=str(box.get("country", "")).upper(),
        log_level=str(box.get("log_level", "INFO")).upper(),
        sip=sip,
        web=web,
        acd=acd,
        recording=_section(raw, "recording", RecordingConfig),
        storage=_storage(raw),
        simulators=_section(raw, "simulators", SimulatorConfig),
        queues=queues,
        agents=agents,
        gsm=tuple(_table_list(raw, "gsm")),
        analog=tuple(_table_list(raw, "analog")),
        dial_plan=dial_plan,
        inbound=inbound,
        menus=menus,
    )


def _storage(raw: dict[str, Any]) -> StorageConfig:
    st = _section(raw, "storage", StorageConfig)
    if st.encryption_key:
        try:
            key = bytes.fromhex(st.encryption_key)
        except ValueError:
            raise ConfigError("[storage] encryption_key must be hex digits") from None
        if len(key) not in (16, 24, 32):
            raise ConfigError("[storage] encryption_key must be 32, 48 or 64 hex digits (AES-128/192/256)")
    if st.min_free_mb < 0 or st.records_days < 0 or st.recordings_days < 0 or st.retention_interval_h <= 0:
        raise ConfigError("[storage] sizes and days must not be negative")
    return st


def _table_list(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = raw.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"[[{name}]] must be an array of tables")
    return items


def _queue(q: dict[str, Any]) -> QueueConfig:
    if not q.get("id"):
        raise ConfigError("every [[queues]] entry needs an id")
    return QueueConfig(
        id=str(q["id"]),
        name=str(q.get("name", q["id"])),
        ringback_s=float(q.get("ringback_s", 4.0)),
        hold_music=str(q.get("hold_music", "")),
        dispositions=tuple(q.get("dispositions", QueueConfig("x", "x").dispositions)),
    )


def _agent(a: dict[str, Any], queue_ids: set[str]) -> AgentConfig:
    if not a.get("id"):
        raise ConfigError("every [[agents]] entry needs an id")
    if "password_hash" in a:
        pw_hash = str(a["password_hash"])
    elif "password" in a:
        pw_hash = hash_password(str(a["password"]))
    else:
        raise ConfigError(f"agent {a['id']} needs password or password_hash")
    queues = tuple(a.get("queues", sorted(queue_ids)))
    missing = set(queues) - queue_ids
    if missing:
        raise ConfigError(f"agent {a['id']} is in unknown queue(s): {', '.join(sorted(missing))}")
    unknown = set(a) - {"id", "name", "password", "password_hash", "queues", "phone"}
    if unknown:
        raise ConfigError(f"agent {a['id']} has unknown key(s): {', '.join(sorted(unknown))}")
    return AgentConfig(id=str(a["id"]), name=str(a.get("name", a["id"])), password_hash=pw_hash, queues=queues,
                       phone=str(a.get("phone", "")))
