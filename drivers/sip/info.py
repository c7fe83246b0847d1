"""Keys pressed, carried in SIP INFO (``application/dtmf-relay``, ``application/dtmf``), as many
PBXs and some trunks send them instead of RFC 4733 events. Pure code but for ``answer_info``.

``application/dtmf-relay`` bodies are ``Signal=5`` / ``Duration=160`` lines; ``application/dtmf``
is the key alone. Some senders give the event code (10 for ``*``, 11 for ``#``, RFC 4733 §3.2).
An INFO without a body (a keep-alive) gets 200; other content types get 415 with Accept.
"""
from __future__ import annotations

from drivers.sip.message import SipRequest
from drivers.sip.useragent import ServerTransaction

KEYS = frozenset("0123456789*#ABCD")
EVENT_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
INFO_TYPES = ("application/dtmf-relay", "application/dtmf")


def key_in_info(request: SipRequest) -> tuple[int, str | None]:
    """(the status to answer with, the key it carries or None)."""
    if not request.body:
        return 200, None
    ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", errors="replace")
    if ctype == "application/dtmf-relay":
        signal = ""
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                signal = value.strip()
    elif ctype == "application/dtmf":
        signal = text.strip()
    else:
        return 415, None
    key = EVENT_CODES.get(signal, signal.upper())
    return (200, key) if key in KEYS else (400, None)


def answer_info(txn: ServerTransaction) -> str | None:
    """Answer an in-dialog INFO; the key it carries, if any."""
    status, key = key_in_info(txn.request)
    extra = (("Accept", ", ".join(INFO_TYPES)),) if status == 415 else ()
    txn.respond(status, reason="Bad DTMF Signal" if status == 400 else None, extra=extra)
    return key
