"""SDES (RFC 4568): a=crypto parsing, the SRTP policy by signalling transport, and our answer."""
from __future__ import annotations

import base64

import pytest

from drivers.sip.errors import SdpError
from drivers.sip.sdes import Crypto, local_key_for, parse_crypto
from drivers.sip.sdp import build_answer, negotiate, parse_sdp
from tests.drivers.sip.test_sdp import sdp

KEY30 = base64.b64encode(bytes(range(30))).decode()
KEY44 = base64.b64encode(bytes(range(44))).decode()
SAVP = ("m=audio 6000 RTP/SAVP 0 101", "a=rtpmap:101 telephone-event/8000",
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^31",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}")


@pytest.mark.parametrize("value,expected", [
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", (1, "AES_CM_128_HMAC_SHA1_80")),
    (f"7 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|2^20", (7, "AES_CM_128_HMAC_SHA1_32")),  # lifetime: fine
    (f"3 AEAD_AES_256_GCM inline:{KEY44}", (3, "AEAD_AES_256_GCM")),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20|1:4", None),  # MKI
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}", None),  # two keys
    (f"1 F8_128_HMAC_SHA1_80 inline:{KEY30}", None),  # suite we do not do
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY44}", None),  # wrong key length for the suite
    ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", None),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP", None),  # session parameters
    (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}", None),
    ("", None),
])
def test_parse_crypto(value: str, expected) -> None:
    crypto = parse_crypto(value)
    assert (None if crypto is None else (crypto.tag, crypto.suite)) == expected
    if crypto is not None:
        assert KEY30[:8] not in repr(crypto) and KEY44[:8] not in repr(crypto)


def test_savp_over_tls_takes_the_first_usable_crypto_and_we_answer_with_our_own_key() -> None:
    offer = parse_sdp(sdp(*SAVP))
    neg = negotiate(offer, secure_signalling=True)
    assert neg.proto == "RTP/SAVP" and neg.crypto == Crypto(2, "AES_CM_128_HMAC_SHA1_32", bytes(range(30)))
    key = local_key_for(neg.crypto, None)
    assert key is not None and len(key) == 30 and local_key_for(neg.crypto, key) is key  # one key per call
    answer = build_answer(offer, neg, "192.0.2.1", 41000, 5, 1, key).decode()
    assert "m=audio 41000 RTP/SAVP 0 101\r\n" in answer
    assert f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(key).decode()}\r\n" in answer
    with pytest.raises(ValueError):
        build_answer(offer, neg, "192.0.2.1", 41000, 5)  # an SRTP answer without our key


def test_savp_over_udp_or_tcp_is_refused_with_a_reason_for_the_operator() -> None:
    with pytest.raises(SdpError) as refused:
        negotiate(parse_sdp(sdp(*SAVP)))
    assert refused.value.status == 488 and "SIP over TLS" in refused.value.detail


def test_savp_without_a_usable_suite_is_refused() -> None:
    with pytest.raises(SdpError) as refused:
        negotiate(parse_sdp(sdp("m=audio 6000 RTP/SAVP 0", f"a=crypto:1 F8_128_HMAC_SHA1_80 inline:{KEY30}")),
                  secure_signalling=True)
    assert refused.value.status == 488 and "crypto suite" in refused.value.detail


def test_best_effort_crypto_on_avp_is_used_over_tls_and_ignored_in_clear() -> None:
    offer = parse_sdp(sdp("m=audio 6000 RTP/AVP 0", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"))
    assert negotiate(offer).crypto is None  # the key travelled in clear: plain RTP, no crypto in the answer
    plain = build_answer(offer, negotiate(offer), "192.0.2.1", 41000, 5).decode()
    assert "a=crypto" not in plain and "RTP/AVP 0" in plain
    secure = negotiate(offer, secure_signalling=True)
    assert secure.proto == "RTP/AVP" and secure.crypto is not None


def test_an_unusable_savp_stream_falls_back_to_a_plain_one_in_the_same_offer() -> None:
    offer = parse_sdp(sdp("m=audio 6000 RTP/SAVP 0", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",
                          "m=audio 6002 RTP/AVP 8"))
    neg = negotiate(offer)  # over UDP: the SAVP stream is refused, the AVP one taken
    assert (neg.media_index, neg.codec, neg.crypto) == (1, "PCMA", None)
    answer = build_answer(offer, neg, "192.0.2.1", 41000, 5).decode()
    assert "m=audio 0 RTP/SAVP 0\r\n" in answer and "m=audio 41000 RTP/AVP 8\r\n" in answer
