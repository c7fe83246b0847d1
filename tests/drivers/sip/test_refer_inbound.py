"""REFER inside an inbound call (the caller transfers us), Replaces on a new INVITE, find_dialog."""
from __future__ import annotations


from drivers.sip.message import response_bytes
from tests.drivers.sip.peer import new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import _answered_call, make_line  # noqa: F401 (fixture)

REFER_TO = "Refer-To: <sip:+441632960555@127.0.0.1>"



async def test_caller_refers_us_202_then_trying_then_failure_notify(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    assert line.find_dialog(call_id, ok.to_addr.tag, peer.from_tag) is call
    assert line.find_dialog(call_id, peer.from_tag, ok.to_addr.tag) is call
    assert "REFER" in ok.headers.get_all("Allow") and "replaces" in ok.headers.get_all("Supported")

    peer.send(peer.request("REFER", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                           extra=(REFER_TO,)))
    assert (await peer.expect(603)).cseq.method == "REFER"  # nobody registered for transfers

    seen = []

    async def cannot_transfer(request) -> bool:
        seen.append(request)
        return False

    call.on_refer(cannot_transfer)
    peer.send(peer.request("REFER", branch=new_branch(), call_id=call_id, cseq=3, to_tag=ok.to_addr.tag,
                           extra=(REFER_TO,)))
    assert (await peer.expect(202)).cseq.method == "REFER"
    trying = await peer.next_request("NOTIFY")
    assert trying.body == b"SIP/2.0 100 Trying\r\n" and trying.to_addr.tag == peer.from_tag
    assert trying.from_addr.tag == ok.to_addr.tag and trying.call_id == call_id
    peer.send(response_bytes(trying, 200))
    final = await peer.next_request("NOTIFY")
    assert final.body == b"SIP/2.0 503 Service Unavailable\r\n"
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert final.headers.get("Content-Type").startswith("message/sipfrag")
    peer.send(response_bytes(final, 200))
    assert seen[0].target_user == "+441632960555" and seen[0].replaces is None

    peer.send(peer.request("REFER", branch=new_branch(), call_id=call_id, cseq=4, to_tag=ok.to_addr.tag,
                           extra=("Refer-To: <sip:x@h?Replaces=nocolon>",)))
    assert (await peer.expect(400)).cseq.method == "REFER"


async def test_invite_with_replaces_exposes_the_dialog_to_take_over(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    replaces = f"Replaces: {call_id};to-tag={ok.to_addr.tag};from-tag={peer.from_tag}"
    peer.send(peer.request("INVITE", branch=new_branch(), call_id=new_call_id(), body=offer_sdp(40002),
                           extra=(replaces, "Require: replaces")))
    await peer.expect(100)
    second = await handler.next_call()
    assert second.replaces == (call_id, ok.to_addr.tag, peer.from_tag)
    assert line.find_dialog(*second.replaces) is call


async def test_second_refer_in_a_dialog_names_its_subscription_with_its_cseq(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)

    async def transferred(request) -> bool:
        return True

    call.on_refer(transferred)
    for cseq, event in ((2, "refer"), (7, "refer;id=7")):  # RFC 3515 §2.4.6: id from the 2nd REFER on
        peer.send(peer.request("REFER", branch=new_branch(), call_id=call_id, cseq=cseq, to_tag=ok.to_addr.tag,
                               extra=(REFER_TO,)))
        assert (await peer.expect(202)).cseq.number == cseq
        trying = await peer.next_request("NOTIFY")
        assert trying.body == b"SIP/2.0 100 Trying\r\n" and trying.headers.get("Event") == event
        peer.send(response_bytes(trying, 200))
        final = await peer.next_request("NOTIFY")
        assert final.body == b"SIP/2.0 200 OK\r\n" and final.headers.get("Event") == event
        assert final.headers.get("Subscription-State") == "terminated;reason=noresource"
        peer.send(response_bytes(final, 200))
