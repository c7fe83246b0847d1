"""Message ids for cloud sync: ``{branch}:{kind}:{ulid}``, minted once when a record is first written.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits, in Crockford
base32 (26 characters), so ids sort by creation time.
"""
from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# cloud subjects use a shorter name for some kinds (see shared/reference/sync.md "Subjects, streams, ids")
_MSG_KIND = {"agent_event": "agent"}


def new_ulid(now_s: float | None = None) -> str:
    ms = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_msg_id(branch: str, kind: str, now_s: float | None = None) -> str:
    return f"{branch}:{_MSG_KIND.get(kind, kind)}:{new_ulid(now_s)}"
