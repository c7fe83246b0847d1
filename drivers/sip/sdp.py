"""SDP offer/answer for G.711 audio (RFC 4566, RFC 3264). Pure code.

We accept PCMU (0) and PCMA (8) and telephone-event/8000 at whatever dynamic
payload type the offer uses, prefer the offer's own order, and always answer with
ptime 20. Hold offers (sendonly/inactive, or the RFC 2543 ``c=0.0.0.0``) get a
recvonly/inactive answer. An ``RTP/SAVP`` stream (or crypto lines on ``RTP/AVP``) is
SRTP with SDES keys when the signalling is TLS: see ``drivers.sip.sdes``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from drivers.sip.errors import SdpError
from drivers.sip.sdes import Crypto, check_profile, choose_crypto, crypto_line
from drivers.sip.uri import is_digits

ANSWER_PTIME_MS = 20  # our frames are 20 ms (media.frames)


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


_MIRROR = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
STATIC_CODECS = {0: "PCMU", 8: "PCMA"}
SUPPORTED = frozenset({"PCMU", "PCMA"})


@dataclass(frozen=True, slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None  # media-level c= address
    rtpmap: tuple[tuple[int, str], ...]  # (pt, "PCMA/8000")
    direction: Direction | None
    ptime: int | None
    crypto: tuple[str, ...] = ()  # a=crypto values (SDES)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin_address: str
    connection: str | None  # session-level c= address
    direction: Direction | None
    media: tuple[MediaDescription, ...]


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What we agreed: where to send, what to send, and which way."""

    remote_host: str
    remote_port: int
    codec: str  # "PCMU" | "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    direction: Direction  # OUR direction in the answer
    remote_ptime: int | None
    media_index: int  # which m= line we accepted
    proto: str = "RTP/AVP"  # the accepted stream's profile (RTP/SAVP: SRTP)
    crypto: Crypto | None = None  # the far end's SRTP key and suite; None: plain RTP

    @property
    def on_hold(self) -> bool:
        return self.direction in (Direction.RECVONLY, Direction.INACTIVE)


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(400, f"bad c= line {value!r}")
    addr = parts[2].split("/")[0]
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        if not addr or " " in addr:
            raise SdpError(400, f"bad c= address {value!r}") from None
    return addr


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError(400, "SDP is not UTF-8") from None
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError(400, "SDP does not start with v=0")
    origin = ""
    s_conn: str | None = None
    s_dir: Direction | None = None
    media: list[dict] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        cur = media[-1] if media else None
        if kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(400, f"bad o= line {value!r}")
            origin = parts[5]
        elif kind == "c":
            if cur is None:
                s_conn = _connection(value)
            else:
                cur["connection"] = _connection(value)
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or not is_digits(parts[1].split("/")[0]):
                raise SdpError(400, f"bad m= line {value!r}")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError(400, f"bad m= port {value!r}")
            media.append({"media": parts[0], "port": port, "proto": parts[2],
                          "formats": tuple(parts[3:]), "connection": None, "rtpmap": [],
                          "direction": None, "ptime": None, "crypto": []})
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in Direction.__members__.values():
                if cur is None:
                    s_dir = Direction(name)
                else:
                    cur["direction"] = Direction(name)
            elif name == "rtpmap" and cur is not None:
                pt, _, enc = arg.partition(" ")
                if not is_digits(pt) or not enc:
                    raise SdpError(400, f"bad rtpmap {value!r}")
                cur["rtpmap"].append((int(pt), enc.strip()))
            elif name == "ptime" and cur is not None and is_digits(arg.strip()):
                cur["ptime"] = int(arg.strip())
            elif name == "crypto" and cur is not None:
                cur["crypto"].append(arg.strip())
    if not origin:
        raise SdpError(400, "SDP without o= line")
    mds = tuple(
        MediaDescription(m["media"], m["port"], m["proto"], m["formats"], m["connection"],
                         tuple(m["rtpmap"]), m["direction"], m["ptime"], tuple(m["crypto"]))
        for m in media
    )
    return SessionDescription(origin, s_conn, s_dir, mds)


def _codec_of(pt: int, md: MediaDescription) -> str | None:
    for mpt, enc in md.rtpmap:
        if mpt == pt:
            name, _, rest = enc.partition("/")
            rate = rest.split("/")[0]
            if name.upper() in SUPPORTED and rate == "8000":
                return name.upper()
            if name.lower() == "telephone-event" and rate == "8000":
                return "telephone-event"
            return None
    return STATIC_CODECS.get(pt)


def _media_address_problem(host: str, ip_version: int | None) -> str | None:
    """Why we could not send RTP to ``host`` (None: we can)."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return f"the media address {host[:64]!r} is not an IP address (hostnames in SDP are not supported)"
    if ip_version is not None and version != ip_version and host not in ("0.0.0.0", "::"):
        return f"the media address {host} is IPv{version} but the box's RTP is IPv{ip_version}"
    return None


def negotiate(offer: SessionDescription, secure_signalling: bool = False, ip_version: int | None = None) -> Negotiated:
    """Pick the first audio stream and its first codec we support. 488 when none fits.
    ``secure_signalling``: the SDP came over TLS, so SDES keys in it may be used.
    ``ip_version``: our RTP socket's (4 or 6); a stream at the other family's address is unusable."""
    refused: SdpError | None = None  # why an SRTP stream could not be taken
    for index, md in enumerate(offer.media):
        proto = md.proto.upper()
        if md.media != "audio" or md.port == 0 or not (proto.startswith("RTP/AVP") or proto == "RTP/SAVP"):
            continue
        try:
            crypto = check_profile(proto, choose_crypto(md.crypto), secure_signalling)
        except SdpError as exc:
            refused = exc
            continue
        codec: tuple[str, int] | None = None
        dtmf: int | None = None
        for fmt in md.formats:
            if not is_digits(fmt):
                continue
            name = _codec_of(int(fmt), md)
            if name == "telephone-event" and dtmf is None:
                dtmf = int(fmt)
            elif name in SUPPORTED and codec is None:
                codec = (name, int(fmt))
        if codec is None:
            continue
        host = md.connection or offer.connection
        if host is None:
            raise SdpError(400, "no c= line for the audio stream")
        problem = _media_address_problem(host, ip_version)
        if problem is not None:
            refused = SdpError(488, problem)
            continue
        remote = md.direction or offer.direction or Direction.SENDRECV
        ours = _MIRROR[remote]
        if host in ("0.0.0.0", "::"):  # RFC 2543 hold: do not send to them
            ours = Direction.INACTIVE if ours in (Direction.INACTIVE, Direction.SENDONLY) else Direction.RECVONLY
        return Negotiated(host, md.port, codec[0], codec[1], dtmf, ours, md.ptime, index,
                          proto="RTP/SAVP" if proto == "RTP/SAVP" else "RTP/AVP", crypto=crypto)
    raise refused or SdpError(488, "no audio stream with PCMU or PCMA")


def build_answer(
    offer: SessionDescription,
    neg: Negotiated,
    local_ip: str,
    local_port: int,
    session_id: int,
    version: int = 1,
    local_key: bytes | None = None,
) -> bytes:
    """The answer: same number of m= lines (others rejected with port 0), RFC 3264 §6.
    ``local_key``: our SRTP master key + salt when ``neg`` agreed SRTP."""
    family = "IP6" if ":" in local_ip else "IP4"
    lines = [
        "v=0",
        f"o=branchline {session_id} {version} IN {family} {local_ip}",
        "s=branchline",
        f"c=IN {family} {local_ip}",
        "t=0 0",
    ]
    for index, md in enumerate(offer.media):
        if index != neg.media_index:
            lines.append(f"m={md.media} 0 {md.proto} {md.formats[0] if md.formats else '0'}")
            continue
        fmts = [str(neg.payload_type)]
        if neg.dtmf_payload_type is not None:
            fmts.append(str(neg.dtmf_payload_type))
        lines.append(f"m=audio {local_port} {neg.proto} {' '.join(fmts)}")
        lines.append(f"a=rtpmap:{neg.payload_type} {neg.codec}/8000")
        if neg.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{neg.dtmf_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{neg.dtmf_payload_type} 0-16")
        lines.append(f"a=ptime:{ANSWER_PTIME_MS}")
        lines.append(f"a={neg.direction.value}")
        if neg.crypto is not None:
            if local_key is None:
                raise ValueError("an SRTP answer needs our key")
            lines.append(crypto_line(neg.crypto, local_key))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


OFFER_DTMF_PT = 101  # the dynamic payload type we offer telephone-event on (the usual choice)


def build_offer(local_ip: str, local_port: int, session_id: int, version: int = 1,
                direction: Direction = Direction.SENDRECV) -> bytes:
    """Our offer for an outgoing call: PCMU, PCMA and telephone-event on one audio stream."""
    family = "IP6" if ":" in local_ip else "IP4"
    lines = [
        "v=0",
        f"o=branchline {session_id} {version} IN {family} {local_ip}",
        "s=branchline",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP 0 8 {OFFER_DTMF_PT}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{OFFER_DTMF_PT} telephone-event/8000",
        f"a=fmtp:{OFFER_DTMF_PT} 0-16",
        f"a=ptime:{ANSWER_PTIME_MS}",
        f"a={direction.value}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def parse_answer(body: bytes) -> tuple[SessionDescription, Negotiated]:
    """The far end's answer to ``build_offer``: what to send where. ``SdpError`` when unusable.

    An answer must pick from what we offered: a codec other than PCMU/PCMA, or a stream
    with port 0 (rejected), is a failed negotiation (RFC 3264 §6).
    """
    answer = parse_sdp(body)
    return answer, negotiate(answer)
