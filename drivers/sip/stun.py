"""STUN Binding keepalives on the SIP UDP port (RFC 5626 §4.4.1, RFC 5389). Pure code.

A phone using SIP Outbound keeps its NAT binding open by sending STUN Binding Requests to
the port it registered with, and compares the XOR-MAPPED-ADDRESS of our answer with the
last one to notice its NAT moved it. Only that much of STUN is here: a message is
recognised by its header (first two bits zero, the magic cookie, a length that matches the
datagram), a Binding Request gets a Binding Success Response carrying the sender's
address, and anything else that looks like STUN (a Binding Indication, a response) is
dropped without an answer. Attributes in the request (SOFTWARE, FINGERPRINT...) are not
read: a keepalive needs none.
"""
from __future__ import annotations

import ipaddress
import struct

MAGIC_COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")  # type, length, magic cookie, transaction ID
HEADER_BYTES = HEADER.size  # 20
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02
MAX_STUN_BYTES = 548  # RFC 5389 §7.1 without path MTU knowledge; a keepalive is 20-28 bytes


def is_stun(data: bytes) -> bool:
    """A well-framed STUN message (RFC 5389 §6): never a SIP message, which starts with a letter."""
    if not HEADER_BYTES <= len(data) <= MAX_STUN_BYTES or data[0] & 0xC0:
        return False
    _type, length, cookie, _tid = HEADER.unpack_from(data)
    return cookie == MAGIC_COOKIE and length % 4 == 0 and length == len(data) - HEADER_BYTES


def binding_response(request: bytes, source: tuple[str, int]) -> bytes | None:
    """The Binding Success Response to ``request`` from ``source`` (ip, port); None when
    ``request`` is not a Binding Request (an indication or a response gets no answer)."""
    if not is_stun(request):
        return None
    msg_type, _length, _cookie, tid = HEADER.unpack_from(request)
    if msg_type != BINDING_REQUEST:
        return None
    attribute = xor_mapped_address(source, tid)
    return HEADER.pack(BINDING_SUCCESS, len(attribute), MAGIC_COOKIE, tid) + attribute


def xor_mapped_address(source: tuple[str, int], transaction_id: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS attribute (RFC 5389 §15.2): port and address XORed with the
    magic cookie (and, for IPv6, the transaction ID after it)."""
    address = ipaddress.ip_address(source[0].split("%")[0])  # a scoped IPv6 "fe80::1%eth0" loses its scope
    port = source[1] ^ (MAGIC_COOKIE >> 16)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    raw = address.packed
    xored = bytes(a ^ k for a, k in zip(raw, key))
    family = FAMILY_IPV4 if address.version == 4 else FAMILY_IPV6
    value = struct.pack("!BBH", 0, family, port) + xored
    return struct.pack("!HH", XOR_MAPPED_ADDRESS, len(value)) + value
