"""Calls through the trunk: digest retry verified by a real DigestServer, caller-ID presentation,
and the pure pieces (our SDP offer/answer, REFER/Replaces parsing, sipfrag bodies)."""
from __future__ import annotations

import asyncio

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause
from drivers.sip.digest import DigestServer, Verdict
from drivers.sip.errors import SdpError, SipSyntaxError
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, parse_message
from drivers.sip.refer import notify_headers, parse_refer, parse_replaces, sipfrag
from drivers.sip.sdp import Direction, build_offer, negotiate, parse_answer, parse_sdp
from tests.drivers.sip.outgoing_peer import answer_sdp, next_request, reply
from tests.drivers.sip.peer import SipPeer

WAIT_S = 3.0


async def _no_calls(call) -> None:
    raise AssertionError("no inbound call expected")


@pytest.fixture
async def trunk_line():
    made: list = []

    async def factory(**cfg):
        peer = await SipPeer(("127.0.0.1", 9)).open()  # the carrier; its target is set once the line is up
        settings = dict(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False,
                        trunk_registrar=f"127.0.0.1:{peer.port}", trunk_register=False, trunk_username="trunkuser",
                        trunk_password="trunk-pass-1", trunk_domain="trunk.test")
        settings.update(cfg)
        line = SipLine(SipLineConfig(**settings), _no_calls)
        await line.start()
        peer.target = ("127.0.0.1", line.udp_port)
        made.append((line, peer))
        return line, peer

    yield factory
    for line, peer in made:
        peer.close()
        await line.stop()


async def test_407_answered_once_with_valid_proxy_authorization(trunk_line) -> None:
    line, peer = await trunk_line()
    carrier = DigestServer("trunk.test", {"trunkuser": "trunk-pass-1"}, ("MD5",))
    now = asyncio.get_running_loop().time()
    call = await line.dial_trunk("+15550001111")
    first = await next_request(peer.recv, "INVITE")
    assert str(first.uri) == "sip:+15550001111@trunk.test"
    assert first.from_addr.uri.user == "trunkuser"  # no trunk_caller_id: the account's number
    peer.send(reply(first, 407, extra=tuple(("Proxy-Authenticate", c) for c in carrier.challenges(now))))
    await next_request(peer.recv, "ACK")
    second = await next_request(peer.recv, "INVITE")
    assert second.call_id == first.call_id and second.from_addr.tag == first.from_addr.tag
    assert second.cseq.number == first.cseq.number + 1 and second.branch != first.branch
    assert second.headers.get("Authorization") is None
    verdict = carrier.check(second.headers.get("Proxy-Authorization"), "INVITE", now, second.uri)
    assert verdict.verdict is Verdict.OK, verdict
    peer.send(reply(second, 200, contact=f"<sip:carrier@127.0.0.1:{peer.port}>", body=answer_sdp(41000)))
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()
    ack = await next_request(peer.recv, "ACK")
    assert ack.cseq.number == second.cseq.number
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    bye = await next_request(peer.recv, "BYE")
    peer.send(reply(bye, 200, to_tag=""))


async def test_second_challenge_is_a_rejection(trunk_line) -> None:
    line, peer = await trunk_line()
    carrier = DigestServer("trunk.test", {"trunkuser": "other"}, ("MD5",))
    now = asyncio.get_running_loop().time()
    call = await line.dial_trunk("+15550001111")
    for _ in range(2):
        invite = await next_request(peer.recv, "INVITE")
        peer.send(reply(invite, 401, extra=tuple(("WWW-Authenticate", c) for c in carrier.challenges(now))))
    assert invite.headers.get("Authorization") is not None
    with pytest.raises(DialFailed) as failed:
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
    assert failed.value.reason is DialFailure.REJECTED and "401" in failed.value.detail


async def test_caller_id_allowed_uses_configured_number_and_name(trunk_line) -> None:
    line, peer = await trunk_line(trunk_caller_id="+441632960000", trunk_caller_name="Branchline Support")
    await line.dial_trunk("+15550001111")
    invite = await next_request(peer.recv, "INVITE")
    assert str(invite.from_addr.uri) == "sip:+441632960000@trunk.test"
    assert invite.from_addr.display_name == "Branchline Support"
    assert invite.headers.get("Privacy") is None and invite.headers.get("P-Asserted-Identity") is None
    await line.dial_trunk("+15550002222", CallerId("+441632960777", "Jane Doe"))  # the appliance's choice wins
    invite = await next_request(peer.recv, "INVITE")
    assert str(invite.from_addr.uri) == "sip:+441632960777@trunk.test" and invite.from_addr.display_name == "Jane Doe"


async def test_caller_id_withheld_is_anonymous_with_privacy_and_pai(trunk_line) -> None:
    line, peer = await trunk_line(trunk_caller_id="+441632960000", trunk_presentation="withheld")
    await line.dial_trunk("+15550001111")
    invite = await next_request(peer.recv, "INVITE")
    assert str(invite.from_addr.uri) == "sip:anonymous@anonymous.invalid"
    assert invite.from_addr.display_name == "Anonymous"
    assert invite.headers.get("Privacy") == "id"
    assert invite.headers.get("P-Asserted-Identity") == "<sip:+441632960000@trunk.test>"


def test_bad_presentation_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="trunk_presentation"):
        SipLineConfig(trunk_presentation="restricted")


def test_offer_lists_pcmu_pcma_and_telephone_event_and_answer_is_applied() -> None:
    offer = parse_sdp(build_offer("192.0.2.10", 40000, 1234))
    ours = negotiate(offer)
    assert (ours.codec, ours.payload_type, ours.dtmf_payload_type) == ("PCMU", 0, 101)
    assert offer.media[0].formats == ("0", "8", "101")
    _, neg = parse_answer(answer_sdp(41000, pts="8 101", direction="recvonly"))
    assert (neg.codec, neg.remote_port, neg.dtmf_payload_type) == ("PCMA", 41000, 101)
    assert neg.direction is Direction.SENDONLY  # they only receive: we send
    with pytest.raises(SdpError) as refused:
        parse_answer(b"v=0\r\no=x 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
                     b"m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
    assert refused.value.status == 488


def _refer(*headers: str) -> SipRequest:
    text = ("REFER sip:branchline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
            "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c1\r\nCSeq: 5 REFER\r\n"
            + "".join(h + "\r\n" for h in headers) + "Content-Length: 0\r\n\r\n")
    request = parse_message(text.encode())
    assert isinstance(request, SipRequest)
    return request


def test_refer_to_with_escaped_replaces_is_decoded() -> None:
    refer = parse_refer(_refer("Refer-To: <sip:+441632960555@pbx.example;user=phone?Replaces=98%2Fx%40pbx%3Bto-tag"
                               "%3D7743%3Bfrom-tag%3D6472&Require=replaces>",
                               'Referred-By: "Desk 201" <sip:201@pbx.example>'))
    assert refer.target_uri == "sip:+441632960555@pbx.example;user=phone"
    assert refer.target_user == "+441632960555"
    assert refer.replaces == ("98/x@pbx", "7743", "6472")
    assert refer.referred_by == "sip:201@pbx.example"
    blind = parse_refer(_refer("r: sip:202@pbx.example"))  # compact form, blind transfer
    assert blind.target_user == "202" and blind.replaces is None and blind.referred_by is None


@pytest.mark.parametrize("headers", [(), ("Refer-To: <sip:a@h>", "Refer-To: <sip:b@h>"), ("Refer-To: nonsense",),
                                     ("Refer-To: <sip:a@h?Replaces=onlycallid>",)])
def test_unusable_refer_is_a_syntax_error(headers) -> None:
    with pytest.raises(SipSyntaxError):
        parse_refer(_refer(*headers))


def test_replaces_header_and_sipfrag() -> None:
    assert parse_replaces("425928@bobster.example.org;to-tag=7743;from-tag=6472;early-only") == (
        "425928@bobster.example.org", "7743", "6472")
    with pytest.raises(SipSyntaxError):
        parse_replaces("425928@bobster.example.org;to-tag=7743")
    assert sipfrag(100) == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(503) == b"SIP/2.0 503 Service Unavailable\r\n"
    assert dict(notify_headers(True, "<sip:x@h>"))["Subscription-State"] == "terminated;reason=noresource"
    assert dict(notify_headers(False, "<sip:x@h>"))["Event"] == "refer"


def test_sip_section_maps_trunk_caller_id_settings() -> None:
    from appliance.config import ConfigError, parse_config

    cfg = parse_config({"sip": {"trunk_caller_id": "+441632960000", "trunk_caller_name": "Support",
                                "trunk_presentation": "withheld", "trunk_register": False}})
    assert (cfg.sip.trunk_caller_id, cfg.sip.trunk_caller_name, cfg.sip.trunk_presentation) == (
        "+441632960000", "Support", "withheld")
    assert cfg.sip.trunk_register is False
    with pytest.raises(ConfigError, match="trunk_presentation"):
        parse_config({"sip": {"trunk_presentation": "hidden"}})
    with pytest.raises(ConfigError, match="trunk_caller_id must be str"):
        parse_config({"sip": {"trunk_caller_id": 441632960000}})


async def test_dialled_number_is_cleaned_for_the_request_uri(trunk_line) -> None:
    line, peer = await trunk_line()
    await line.dial_trunk("+44 (1632) 960-111#")
    invite = await next_request(peer.recv, "INVITE")
    assert invite.headers.get("To") == "<sip:+441632960-111%23@trunk.test>"
    assert invite.uri.user == "+441632960-111#"  # the parser unescapes


async def test_a_trunk_that_refuses_our_register_is_line_down_for_dialling(trunk_line) -> None:
    from drivers.sip.trunk import TrunkState

    line, peer = await trunk_line(trunk_register=True)
    register = await next_request(peer.recv, "REGISTER")
    peer.send(reply(register, 403))  # the carrier refuses the account
    async with asyncio.timeout(WAIT_S):
        while line._trunk.state is not TrunkState.FAILING:
            await line._trunk.transitions.get()
    with pytest.raises(DialFailed) as info:
        await line.dial_trunk("+15550001111")
    assert info.value.reason is DialFailure.LINE_DOWN and "trunk not registered" in str(info.value)
