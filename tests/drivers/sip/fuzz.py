"""A seeded SIP message mutator: valid seeds, structure-aware and byte-level mutations."""
from __future__ import annotations

import random

SDP = (b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=sendonly\r\n")


def _msg(start: str, headers: list[str], body: bytes = b"") -> bytes:
    lines = [start, *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_COMMON = [
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKseed;rport",
    "Max-Forwards: 70",
    'From: "Alice \\"A\\"" <sip:alice@example.org>;tag=1928301774',
    "Call-ID: seed-call@10.0.0.1",
]

SEEDS: tuple[bytes, ...] = (
    _msg("INVITE sip:100@example.com SIP/2.0",
         [*_COMMON, "To: <sip:100@example.com>", "CSeq: 1 INVITE", "Contact: <sip:alice@10.0.0.1>",
          "Content-Type: application/sdp", "Supported: timer", "Session-Expires: 1800;refresher=uac"], SDP),
    _msg("INVITE sip:100@example.com SIP/2.0",
         [*_COMMON, "To: <sip:100@example.com>;tag=abc", "CSeq: 2 INVITE", "Contact: <sip:alice@10.0.0.1>",
          "Content-Type: application/sdp"], SDP),
    _msg("REGISTER sip:example.com SIP/2.0",
         [*_COMMON, "To: <sip:201@example.com>", "CSeq: 3 REGISTER",
          "Contact: <sip:201@10.0.0.1:5062>;expires=120, <sip:201@10.0.0.2>", "Expires: 300",
          'Authorization: Digest username="201", realm="branchline", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",'
          ' uri="sip:example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5,'
          ' cnonce="c0ffee", qop=auth, nc=00000001']),
    _msg("REGISTER sip:example.com SIP/2.0",
         [*_COMMON, "To: <sip:201@example.com>", "CSeq: 4 REGISTER", "Contact: *", "Expires: 0"]),
    _msg("OPTIONS sip:100@example.com SIP/2.0", [*_COMMON, "To: <sip:100@example.com>", "CSeq: 5 OPTIONS",
                                                 "Accept: application/sdp"]),
    _msg("BYE sip:100@example.com SIP/2.0", [*_COMMON, "To: <sip:100@example.com>;tag=abc", "CSeq: 6 BYE"]),
    _msg("CANCEL sip:100@example.com SIP/2.0", [*_COMMON, "To: <sip:100@example.com>", "CSeq: 1 CANCEL"]),
    _msg("ACK sip:100@example.com SIP/2.0", [*_COMMON, "To: <sip:100@example.com>;tag=abc", "CSeq: 1 ACK"]),
    _msg("SIP/2.0 401 Unauthorized",
         [*_COMMON, "To: <sip:201@example.com>;tag=x", "CSeq: 1 REGISTER",
          'WWW-Authenticate: Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"']),
    _msg("SIP/2.0 200 OK", [*_COMMON, "To: <sip:100@example.com>;tag=x", "CSeq: 6 BYE"]),
)

INTERESTING = [
    b"", b" ", b"\r\n", b"\n", b"\r\n ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"%", b"%zz", b"%00",
    b"@", b"[", b"]", b"\x00", b"\xff", b"\xc3\x28", b"sip:", b"tel:", b"*", b"=", b"0", b"-1", b"4294967296",
    b"99999999999999999999", b"SIP/2.0", b"SIP/3.0", b"z9hG4bK", b";tag=", b"Digest ", b'nc=ffffffff',
    b"a=sendonly", b"m=audio 0 RTP/AVP 0", b"c=IN IP4 0.0.0.0", b"A" * 300, b"\r\n\r\n",
]


class Mutator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def mutate(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(9)
            n = len(data)
            if n == 0:
                data += rng.choice(INTERESTING)
                continue
            pos = rng.randrange(n)
            if op == 0:  # flip a byte
                data[pos] = rng.randrange(256)
            elif op == 1:  # insert an interesting token
                data[pos:pos] = rng.choice(INTERESTING)
            elif op == 2:  # delete a range
                del data[pos:pos + rng.randint(1, 16)]
            elif op == 3:  # overwrite with a token
                token = rng.choice(INTERESTING)
                data[pos:pos + len(token)] = token
            elif op == 4:  # truncate
                del data[pos:]
            elif op == 5 or op == 6:  # line-level: duplicate, drop or swap a line
                lines = bytes(data).split(b"\r\n")
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                if op == 5:
                    lines.insert(j, lines[i])
                elif rng.random() < 0.5:
                    del lines[i]
                else:
                    lines[i], lines[j] = lines[j], lines[i]
                data = bytearray(b"\r\n".join(lines))
            elif op == 7:  # replace a header value after its colon
                colon = data.find(b":", pos)
                end = data.find(b"\r\n", colon + 1) if colon >= 0 else -1
                if colon >= 0 and end > colon:
                    data[colon + 1:end] = b" " + rng.choice(INTERESTING)
            else:  # repeat a chunk
                chunk = data[pos:pos + rng.randint(1, 64)]
                data[pos:pos] = chunk * rng.randint(1, 20)
        return bytes(data)
