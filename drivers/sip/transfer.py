"""Serving an in-dialog REFER for a call, inbound or outgoing (RFC 3515 §2.4).

Without a registered callback the REFER is declined (603). With one: 202 Accepted, a NOTIFY
``100 Trying`` (subscription active), then the callback decides (the appliance transfers
the call, resolving a Replaces with ``SipLine.find_dialog``) and a final NOTIFY reports
``200 OK`` or ``503 Service Unavailable`` (subscription terminated). Every REFER after the
dialog's first names its own subscription in its NOTIFYs: ``Event: refer;id=<its CSeq>`` (§2.4.6).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from drivers.sip.dialog import DialogRequests
from drivers.sip.errors import SipSyntaxError
from drivers.sip.refer import NOTIFY_EXPIRES_S, ReferRequest, notify_headers, parse_refer, sipfrag
from drivers.sip.useragent import ServerTransaction, UserAgent

log = logging.getLogger(__name__)

ReferCallback = Callable[[ReferRequest], Awaitable[bool]]
REFER_CALLBACK_MAX_S = float(NOTIFY_EXPIRES_S)  # the subscription we announced ends then: report failure


class ReferServer:
    """One call's REFER handling. ``spawn(coro, name)`` runs the callback in the call's own task set."""

    def __init__(self, ua: UserAgent, label: str, spawn: Callable[..., None]) -> None:
        self._ua = ua
        self._label = label
        self._spawn = spawn
        self.callback: ReferCallback | None = None
        self._refers = 0  # REFERs seen in this dialog: the first one's NOTIFYs carry no id

    def serve(self, txn: ServerTransaction, dialog: DialogRequests, contact: str) -> None:
        self._refers += 1
        event_id = txn.request.cseq.number if self._refers > 1 else None
        if self.callback is None:
            txn.respond(603, reason="Declined")
            return
        try:
            refer = parse_refer(txn.request)
        except SipSyntaxError as exc:
            txn.respond(400, reason=f"Bad Request ({str(exc)[:60]})")
            return
        txn.respond(202, extra=(("Contact", contact),))
        dialog.send(self._ua, "NOTIFY", extra=notify_headers(False, contact, event_id), body=sipfrag(100))
        log.info("SIP call %s: REFER to %s%s", self._label, refer.target_uri,
                 " (replacing a dialog)" if refer.replaces else "")
        self._spawn(self._finish(refer, dialog, contact, self.callback, event_id), "sip-refer")

    async def _finish(self, refer: ReferRequest, dialog: DialogRequests, contact: str,
                      callback: ReferCallback, event_id: int | None) -> None:
        ok = False
        try:
            async with asyncio.timeout(REFER_CALLBACK_MAX_S):
                ok = bool(await callback(refer))
        except TimeoutError:
            log.warning("SIP call %s: transfer to %s not done in %.0f s", self._label, refer.target_uri,
                        REFER_CALLBACK_MAX_S)
        except Exception:
            log.exception("SIP call %s: REFER callback failed", self._label)
        finally:  # also on cancellation: the referrer is told the outcome
            body = sipfrag(200) if ok else sipfrag(503)
            dialog.send(self._ua, "NOTIFY", extra=notify_headers(True, contact, event_id), body=body)
        log.info("SIP call %s: transfer to %s %s", self._label, refer.target_uri, "done" if ok else "failed")
