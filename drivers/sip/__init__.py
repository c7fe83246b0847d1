"""Branchline's own SIP stack: a sans-IO core with a thin asyncio shell.

Pure code (no I/O, testable with bytes and a fake clock):
    uri.py          SIP/tel URIs and name-addr (identity is the URI, never the display name)
    headers.py      header names (compact forms), list splitting, Via, CSeq
    message.py      parse/serialize, typed parse errors carrying the status to answer, TCP framing
    sdp.py          offer parsing, G.711 + telephone-event negotiation, answers, hold
    transaction.py  RFC 3261 §17 / RFC 6026 transactions and the UAS 2xx retransmitter
    guard.py        per-source rate limit and temporary bans for scanners
    digest.py       Digest auth (RFC 7616/8760: SHA-256, MD5, qop=auth), server and client side
    registrar.py    REGISTER handling and the location service for desk phones
    session_timer.py RFC 4028 session timers (UAS side, when the caller asks)
    dialog.py       our in-dialog requests (BYE, re-INVITE, ACK, NOTIFY) for UAS and UAC dialogs; re-offers
    identity.py     caller ID of an INVITE (never from the display name), its Replaces target
    refer.py        REFER (RFC 3515) / Replaces (RFC 3891) parsing, refer NOTIFY sipfrag bodies
    uac.py          our INVITE / its digest re-send / CANCEL, final status -> DialFailure
    dialling.py     where and as whom we call: a registered desk phone, or the trunk (caller-ID presentation)
    config.py       SipLineConfig
asyncio shell:
    transport.py    UDP, TCP and TLS sockets (uvloop-safe), CRLF keep-alive pongs
    tls.py          TLS certificate (configured or self-signed, kept) and the server SSL context
    useragent.py    transaction tables and timers, OPTIONS/CANCEL/ACK/501/481 handling
    call.py         SipCall: one inbound dialog, the appliance.lines.InboundCall (+ hold/resume)
    outgoing.py     OutgoingSipCall: one outgoing dialog, the appliance.lines.OutboundCall
    transfer.py     serving an in-dialog REFER: 202, NOTIFY 100 Trying, NOTIFY with the result
    inband.py       the call's audio leg for the bridge; in-band DTMF tones when RFC 4733 is not negotiated
    trunk.py        outbound registration to a SIP trunk, refresh and backoff
    qualify.py      OPTIONS to registered UDP phones: NAT keepalive and reachability
    bindings_file.py the registrations kept across restarts (atomic JSON file, coalesced writes)
    line.py         SipLine: what run.py starts
"""
