"""The SIP line's settings (built by the appliance from the [sip] section of the box config)."""
from __future__ import annotations

from dataclasses import dataclass, field

from media.rtp import DEFAULT_PORT_RANGE

PRESENTATIONS = ("allowed", "withheld")


@dataclass(frozen=True, slots=True)
class SipLineConfig:
    host: str = "0.0.0.0"
    port: int = 5060  # 0: ephemeral (tests); actual ports in SipLine.udp_port / tcp_port
    advertised_ip: str | None = None  # address put in SDP/Contact/Via; None: found per call
    rtp_host: str | None = None  # where RTP sockets bind; None: same as host
    rtp_port_range: tuple[int, int] | None = field(default=DEFAULT_PORT_RANGE)  # None: any port
    rtp_latching: bool = False  # follow the first RTP source (NAT); off: strict SDP address
    tcp: bool = True
    # --- SIP over TLS (RFC 3261 §26.2) ---
    tls: bool = False
    tls_port: int = 5061  # 0: ephemeral (tests); actual port in SipLine.tls_port
    tls_cert: str = ""  # PEM certificate (chain) path; empty with tls_key empty: self-signed in tls_dir
    tls_key: str = ""  # PEM private key path
    tls_dir: str = ""  # where the self-signed pair is generated on first start and reused (e.g. data_dir/tls)
    line_id: str = "sip"
    server_name: str = "Branchline"
    progress_status: int = 180  # progress(): 180 Ringing+SDP (works with every UA) or 183 Session Progress
    # --- hostile input (drivers.sip.guard): per-source rate limit and scanner bans ---
    guard: bool = True
    rate_limit_per_s: float = 100.0  # sustained messages/s per source IP (a call setup is ~3)
    rate_limit_burst: int = 200
    ban_after_failures: int = 10  # wrong passwords, REGISTER sweeps leaving challenges unanswered, malformed ...
    ban_window_s: float = 60.0  # ... within this window ...
    ban_s: float = 300.0  # ... ignore the source this long
    trusted_networks: tuple[str, ...] = ()  # e.g. the carrier's SBC: never limited or banned
    # numbers (Request-URI users) we take calls for; empty: any. An INVITE for another number gets
    # 404 and counts as a failed attempt, so an INVITE sweep (svwar -m INVITE) gets its source banned.
    numbers: tuple[str, ...] = ()
    # --- registrar for desk phones (on when ``users`` is not empty) ---
    users: tuple[tuple[str, str], ...] = ()  # (extension, password), passwords in plain text for now
    realm: str = "branchline"
    auth_algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # challenge order (RFC 8760: strongest first)
    register_min_expires: int = 60
    register_max_expires: int = 3600
    register_default_expires: int = 3600
    qualify_s: float = 25.0  # OPTIONS to each UDP phone this often (keeps its NAT open, finds it dead); 0: off
    bindings_file: str = ""  # registrations kept across restarts (e.g. data_dir/run/sip-bindings.json); empty: memory
    # --- outbound registration to a SIP trunk (on when ``trunk_registrar`` is set) ---
    trunk_registrar: str = ""  # "host:port" of the provider's registrar (UDP)
    trunk_username: str = ""
    trunk_password: str = ""
    trunk_domain: str = ""  # AOR domain; empty: the registrar host
    trunk_expires: int = 600
    trunk_register: bool = True  # False: an IP-authenticated trunk, used for calls only (no REGISTER)
    # --- caller ID on calls we place through the trunk (dial_trunk) ---
    trunk_caller_id: str = ""  # number presented; empty: trunk_username
    trunk_caller_name: str = ""  # display name presented; empty: none
    trunk_presentation: str = "allowed"  # "allowed" | "withheld" (Anonymous From, Privacy: id, real number in PAI)

    def __post_init__(self) -> None:
        if self.trunk_presentation not in PRESENTATIONS:
            raise ValueError(f"trunk_presentation must be one of {', '.join(PRESENTATIONS)}, "
                             f"not {self.trunk_presentation!r}")
