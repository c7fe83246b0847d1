"""Where and as whom the SIP line places a call: a registered desk phone, or the trunk. Pure code.

A desk phone is reached at the contact it registered (Request-URI), over the connection it
registered on: its UDP source address (it may sit behind NAT) or its still-open TCP/TLS
connection. The trunk gets ``sip:<number>@<trunk domain>`` at the registrar's address, with
the configured caller-ID presentation: allowed (our number and name in From), or withheld
(RFC 3323/3325: an anonymous From, ``Privacy: id`` and the real number in
``P-Asserted-Identity`` for the carrier).
"""
from __future__ import annotations

from appliance.lines import CallerId
from drivers.sip.config import SipLineConfig
from drivers.sip.outgoing import Destination
from drivers.sip.transport import Connection
from drivers.sip.uac import Credentials
from drivers.sip.uri import NameAddr, Uri

ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'


def _user(number: str) -> str:
    """A number as a URI user part: keep what a phone number may hold ('#' escaped, RFC 3261 §19.1.2)."""
    kept = "".join(c for c in number if c.isascii() and (c.isalnum() or c in "+-.*#_"))
    return kept.replace("#", "%23")


def _name_addr(name: str | None, user: str, host: str) -> str:
    return str(NameAddr(name or None, Uri("sip", user, host)))


def extension_destination(extension: str, contact_uri: str, conn: Connection, local_ip: str, contact: str,
                          caller: CallerId | None, server_name: str) -> Destination:
    """Ring a registered phone: From shows the caller (the customer) so the phone displays them."""
    host = f"[{local_ip}]" if ":" in local_ip else local_ip
    if caller is not None and caller.number and caller.presentation == "available" and _user(caller.number):
        from_value = _name_addr(caller.name, _user(caller.number), host)
    elif caller is not None and caller.presentation != "available":
        from_value = ANONYMOUS_FROM
    else:
        from_value = _name_addr(server_name, "branchline", host)
    return Destination(request_uri=contact_uri, from_value=from_value,
                       to_value=_name_addr(None, _user(extension), host), conn=conn, local_ip=local_ip,
                       contact=contact, follow_next_hop=False)


def trunk_destination(config: SipLineConfig, number: str, domain: str, conn: Connection, local_ip: str,
                      contact: str, caller: CallerId | None) -> Destination:
    """Call ``number`` through the trunk with the configured (or given) caller ID."""
    own = config.trunk_caller_id or config.trunk_username
    presented = own
    name = config.trunk_caller_name or None
    if caller is not None and caller.number and _user(caller.number):
        presented, name = _user(caller.number), caller.name or name
    withheld = config.trunk_presentation == "withheld" or (caller is not None and caller.presentation != "available")
    target = _user(number)
    extra: tuple[tuple[str, str], ...] = ()
    if withheld:
        from_value = ANONYMOUS_FROM
        extra = (("Privacy", "id"), ("P-Asserted-Identity", f"<sip:{presented}@{domain}>"))
    else:
        from_value = _name_addr(name, presented, domain)
    credentials = Credentials(config.trunk_username, config.trunk_password) if config.trunk_username else None
    return Destination(request_uri=f"sip:{target}@{domain}", from_value=from_value,
                       to_value=f"<sip:{target}@{domain}>", conn=conn, local_ip=local_ip, contact=contact,
                       extra=extra, credentials=credentials)
