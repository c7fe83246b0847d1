"""Certificates and the server SSL context for SIP over TLS (RFC 3261 §26.2, port 5061).

Either the operator gives a certificate and key (PEM files), or the line generates a
self-signed pair on first start into a folder it keeps (e.g. ``data_dir/tls/``) and
reuses it on later starts, so phones that pinned the certificate keep trusting it.
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

SELF_SIGNED_DAYS = 3650  # a box certificate nobody renews: 10 years (phones pin it, no CA checks expiry)
CERT_FILE = "sip-cert.pem"
KEY_FILE = "sip-key.pem"


class TlsSetupError(Exception):
    """The certificate/key cannot be used (missing, unreadable, mismatched)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    generated: bool  # True when created on this start


def _alt_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ("localhost", "127.0.0.1", socket.gethostname(), *hosts):
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            names.append(x509.DNSName(host))
            continue
        if not address.is_unspecified:
            names.append(x509.IPAddress(address))
    return names


def generate_self_signed(folder: Path, hosts: tuple[str, ...] = ()) -> TlsFiles:
    """Write a new P-256 key and a self-signed certificate for ``hosts`` (+ localhost) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname() or "branchline"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Branchline")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a peer clock slightly behind
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the key is never world-readable
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(cert_path, key_path, True)


def resolve_files(cert: str, key: str, folder: str, hosts: tuple[str, ...] = ()) -> TlsFiles:
    """The configured pair, else the pair kept in ``folder`` (generated there when missing)."""
    if cert or key:
        if not (cert and key):
            raise TlsSetupError("TLS needs both a certificate and a key file (or neither, to self-sign)")
        return TlsFiles(Path(cert), Path(key), False)
    if not folder:
        raise TlsSetupError("TLS needs a certificate and key, or a folder to keep a self-signed pair in")
    base = Path(folder)
    if (base / CERT_FILE).is_file() and (base / KEY_FILE).is_file():
        return TlsFiles(base / CERT_FILE, base / KEY_FILE, False)
    files = generate_self_signed(base, hosts)
    log.info("SIP TLS: generated a self-signed certificate in %s", base)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS 1.2+ server context; no client certificates asked (phones authenticate with digest)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"cannot load certificate {files.cert} / key {files.key}: {exc}") from None
    return context
