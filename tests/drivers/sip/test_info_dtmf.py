"""Keys in SIP INFO (application/dtmf-relay, application/dtmf) reach the call like RFC 4733 keys."""
from __future__ import annotations

import pytest

from appliance.lines import HangupCause
from drivers.sip.message import response_bytes
from tests.drivers.sip.peer import new_branch
from tests.drivers.sip.test_line_udp import _answered_call, make_line  # noqa: F401 (fixture)


def _info(peer, call_id: str, ok, cseq: int, ctype: str, body: str) -> str:
    request = peer.request("INFO", branch=new_branch(), call_id=call_id, cseq=cseq, to_tag=ok.to_addr.tag,
                           body=body)
    return request.replace("Content-Type: application/sdp", f"Content-Type: {ctype}")


@pytest.mark.parametrize("ctype,body,status,key", [
    ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", 200, "5"),
    ("application/dtmf-relay", "Signal= 11\r\nDuration=100\r\n", 200, "#"),  # the event code of '#'
    ("application/dtmf-relay", "signal=*\r\n", 200, "*"),
    ("application/dtmf", "9", 200, "9"),
    ("application/dtmf-relay", "Signal=X\r\n", 400, None),
    ("text/plain", "5", 415, None),
    ("application/dtmf", "", 200, None),  # an empty INFO: a keep-alive
])
async def test_info_keys(make_line, ctype: str, body: str, status: int, key: str | None) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    keys: list[str] = []
    call.on_dtmf(keys.append)
    peer.send(_info(peer, call_id, ok, 2, ctype, body))
    answer = await peer.expect(status)
    assert answer.cseq.method == "INFO"
    if status == 415:
        assert answer.headers.get_all("Accept") == ["application/dtmf-relay", "application/dtmf"]
    await peer.sync()
    assert keys == ([key] if key else [])
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    peer.send(response_bytes(await peer.next_request("BYE"), 200))


async def test_options_allow_lists_info_and_prack(make_line) -> None:
    line, handler, peer = await make_line()
    await peer.sync()
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id="allow-check"))
    allow = (await peer.expect(200)).headers.get_all("Allow")
    assert "INFO" in allow and "PRACK" in allow
