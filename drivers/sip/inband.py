"""The audio leg of a SIP call as the bridge sees it, able to carry DTMF as tones in the audio.

A caller whose SDP did not offer ``telephone-event`` (RFC 4733) can still hear digits we
send: ``send_tones`` plays the dual tones from ``media.dtmf`` through the same RTP stream
(same SSRC, sequence and timestamp clock), paced every 20 ms. While a digit plays, the
bridge's frames are held back (counted), exactly as during an RFC 4733 burst, so the
caller never gets two packets per 20 ms.
"""
from __future__ import annotations

import asyncio

from media.dtmf import dtmf_frames
from media.frames import FRAME_S
from media.rtp import RtpSession, RtpStatistics

INBAND_GAP_MS = 60  # silence after each tone: Q.24 needs >= 40 ms between digits; detectors here use 40


class InbandDtmfLeg:
    """Wraps the call's ``RtpSession``: the ``LegAudio`` the bridge reads and writes, plus in-band DTMF."""

    def __init__(self, rtp: RtpSession) -> None:
        self._rtp = rtp
        self._playing = False
        self.held_back = 0  # bridge frames not sent because a digit was playing

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

    # ---- in-band DTMF ---------------------------------------------------------------
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
