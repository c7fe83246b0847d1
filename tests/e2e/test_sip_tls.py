"""SIP over TLS on the running box: a self-signed pair is made on first start and reused."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from tests.support.box import running_box

IO_TIMEOUT_S = 10.0


async def options_over_tls(port: int, cafile: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False  # the pair names localhost/127.0.0.1; we verify the chain only
    async with asyncio.timeout(IO_TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        try:
            writer.write(
                b"OPTIONS sip:support@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-tls-1\r\n"
                b"From: <sip:probe@127.0.0.1>;tag=t1\r\nTo: <sip:support@127.0.0.1>\r\n"
                b"Call-ID: tls-probe-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
    return head.decode()


async def test_box_answers_sip_over_tls_with_its_self_signed_certificate(tmp_path: Path) -> None:
    tls = 'transports = ["udp", "tcp", "tls"]\ntls_port = 0'
    async with running_box(tmp_path, sip_extra=tls) as box:
        assert box.sip_tls
        cert = box.data_dir / "tls" / "sip-cert.pem"
        first = cert.read_bytes()
        reply = await options_over_tls(box.sip_tls, cert)
        assert reply.startswith("SIP/2.0 200") and "CSeq: 1 OPTIONS" in reply
    async with running_box(tmp_path, sip_extra=tls) as box:
        assert cert.read_bytes() == first  # reused, not regenerated
        assert (await options_over_tls(box.sip_tls, cert)).startswith("SIP/2.0 200")
