"""The on-disk envelope of every shard, sidecar and meta file: JSON with a length and a checksum.

Layout (valid JSON, so `jq` still reads it)::

    {"b2":"<32 hex>","len":"0000012345","tables":<body>}

``body`` is the compact JSON of the TinyDB tables; ``b2`` is BLAKE2b-128 of exactly
those bytes and ``len`` their count. The header has a fixed width, so a reader can
check a file without parsing it. A truncated, zero-filled or torn file fails the
length or checksum test and is reported as ``CorruptFileError``; it is never parsed
into a plausible but wrong state (TinyDB's in-place rewrite can resurrect deleted
rows, see shared/reference/sync.md).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

_PREFIX = b'{"b2":"'
_HEADER_LEN = len(_PREFIX) + 32 + len(b'","len":"') + 10 + len(b'","tables":')
MAX_BODY = 9_999_999_999


class CorruptFileError(ValueError):
    """The file failed its length or checksum check, or its body is not JSON."""


def digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def wrap(body: bytes) -> bytes:
    """The envelope around an already serialised JSON body."""
    return b'%s%s","len":"%010d","tables":%s}' % (_PREFIX, digest(body).encode(), len(body), body)


def encode(tables: Any) -> bytes:
    return wrap(dumps(tables))


def read_header(head: bytes) -> tuple[str, int]:
    """(digest, body length) from the first bytes of a file; raises CorruptFileError."""
    if len(head) < _HEADER_LEN or not head.startswith(_PREFIX):
        raise CorruptFileError("bad or missing header")
    text = head[:_HEADER_LEN].decode("ascii", errors="replace")
    hexdigest, length = text[7:39], text[48:58]
    if text[39:48] != '","len":"' or text[58:] != '","tables":' or not length.isdigit():
        raise CorruptFileError("bad header")
    return hexdigest, int(length)


def file_size_for(body_len: int) -> int:
    return _HEADER_LEN + body_len + 1


HEADER_LEN = _HEADER_LEN


def verify(raw: bytes) -> bytes:
    """The body of an envelope after its header, length and checksum checks (no JSON parse)."""
    hexdigest, length = read_header(raw)
    if len(raw) != file_size_for(length):
        raise CorruptFileError(f"length {len(raw)} != {file_size_for(length)} (truncated or padded)")
    if raw[-1:] != b"}":
        raise CorruptFileError("missing closing brace")
    body = raw[_HEADER_LEN:-1]
    if digest(body) != hexdigest:
        raise CorruptFileError("checksum mismatch")
    return body


def decode(raw: bytes) -> Any:
    """The tables inside an envelope; raises CorruptFileError when anything does not match."""
    body = verify(raw)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # checksum matched: a bug, not a torn write
        raise CorruptFileError(f"body is not JSON: {exc}") from None
