"""The audio leg of a SIP call as the bridge sees it, able to carry DTMF as tones in the audio.

A caller whose SDP did not offer ``telephone-event`` (RFC 4733) can still hear digits we
send: ``send_tones`` plays the dual tones from ``media.dtmf`` through the same RTP stream
(same SSRC, sequence and timestamp clock), paced every 20 ms. While a digit plays, the
bridge's frames are held back (counted), exactly as during an RFC 4733 burst, so the
caller never gets two packets per 20 ms. ``send_digit`` picks RFC 4733 or tones for a call
of either kind; digits received (RFC 4733) go to every ``on_dtmf`` callback.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from drivers.sip.sdp import Direction, Negotiated
from media.dtmf import dtmf_frames
from media.frames import FRAME_S
from media.rtp import RtpSession, RtpStatistics

log = logging.getLogger(__name__)

INBAND_GAP_MS = 60  # silence after each tone: Q.24 needs >= 40 ms between digits; detectors here use 40


class InbandDtmfLeg:
    """Wraps the call's ``RtpSession``: the ``LegAudio`` the bridge reads and writes, plus in-band DTMF."""

    def __init__(self, rtp: RtpSession, label: str = "") -> None:
        self._rtp = rtp
        self._label = label  # the call, for logs
        self._playing = False
        self.held_back = 0  # bridge frames not sent because a digit was playing
        self._dtmf_callbacks: list[Callable[[str], None]] = []
        rtp.on_dtmf(self.deliver_dtmf)

    # ---- LegAudio ---------------------------------------------------------------
    def read_frame_nowait(self) -> bytes | None:
        return self._rtp.read_frame_nowait()

    def write_frame(self, pcm: bytes) -> None:
        if self._playing:
            self.held_back += 1
            return
        self._rtp.write_frame(pcm)

    # ---- the RTP session's lifecycle, for the line -------------------------------------
    async def start(self) -> int:
        return await self._rtp.start()

    def close(self) -> None:
        self._rtp.close()

    @property
    def closed(self) -> bool:
        return self._rtp.closed

    @property
    def local_port(self) -> int:
        return self._rtp.local_port

    def statistics(self) -> RtpStatistics:
        return self._rtp.statistics()

    # ---- DTMF both ways ---------------------------------------------------------------
    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self._dtmf_callbacks.append(callback)

    def deliver_dtmf(self, digit: str) -> None:
        for callback in self._dtmf_callbacks:
            try:
                callback(digit)
            except Exception:
                log.exception("SIP call %s: DTMF callback failed", self._label)

    async def send_digit(self, digit: str, duration_ms: int, neg: Negotiated) -> bool:
        """RFC 4733 when ``neg`` has telephone-event, else in-band tones. False when we may not send
        (held by the far end: nowhere to send) or a digit is still playing. ``ValueError``: not a key."""
        if neg.dtmf_payload_type is not None:
            return await self._rtp.send_dtmf(digit, duration_ms)
        if (neg.direction not in (Direction.SENDRECV, Direction.SENDONLY) or neg.remote_port == 0
                or neg.remote_host in ("0.0.0.0", "::")):
            return False
        return await self.send_tones(digit, duration_ms)

    @property
    def playing(self) -> bool:
        return self._playing

    async def send_tones(self, digit: str, duration_ms: int = 100) -> bool:
        """Play one digit (tone of ``duration_ms`` then a short gap). False when busy or closed.

        Raises ``ValueError`` for a character that is not a DTMF key.
        """
        frames = dtmf_frames(digit, tone_ms=duration_ms, gap_ms=INBAND_GAP_MS)
        if self._playing or self._rtp.closed:
            return False
        loop = asyncio.get_running_loop()
        self._playing = True
        start = loop.time()
        try:
            for index, frame in enumerate(frames):
                delay = start + index * FRAME_S - loop.time()  # absolute schedule: no drift
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._rtp.closed:
                    return False
                self._rtp.write_frame(frame)
        finally:
            self._playing = False
        return True
