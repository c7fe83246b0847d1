"""End to end with a second real SIP phone: linphonec registers, calls, holds, resumes and hangs up.

The box runs as its own process (``run.py``) with extension 201 in its registrar. Debian's
linphonec (liblinphone 5.1) registers as 201 with digest (SHA-256, RFC 8760) over UDP, calls ``support``; a headless
Chromium agent answers. linphonec plays a 600 Hz WAV (``soundcard use files`` + ``play``) and
records what it hears; it is driven over its stdin console. See tests/support/linphone.py for
what it takes to make linphonec open a SIP socket at all in a sandbox.
"""
from __future__ import annotations

import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_sip_call_to_browser import login, loud_seconds, peak_hz
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav
from tests.support.linphone import EVENT_TIMEOUT_S, invite_answers, running_linphonec, write_linphone_config
from tests.support.softphone import (
    AGENT_TONE_HZ,
    EXTENSION_201_BOTH,
    EXTENSION_201_PASSWORD,
    TALK_S,
    TONE_TOLERANCE_HZ,
    agent_hears_the_phone,
    answer_offer,
    assert_answered_call_recorded,
    finish_wrapup,
    write_phone_wav,
)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(shutil.which("linphonec") is None, reason="no linphonec")]


async def test_linphonec_registers_calls_holds_resumes_and_hangs_up(tmp_path: Path) -> None:
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    phone_wav = write_phone_wav(tmp_path / "phone.wav")
    heard_wav = tmp_path / "heard.wav"
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", sip_extra=EXTENSION_201_BOTH) as box:
        setup = write_linphone_config(tmp_path / "linphone", box_port=box.sip_udp, user="201",
                                      password=EXTENSION_201_PASSWORD)
        async with launch_chromium(fake_audio_wav=mic) as browser:
            page = await browser.new_page()
            await login(page, box.web_url, "alice", "alice-pw")
            async with running_linphonec(setup) as phone:
                await box.wait_for_log(r"SIP extension 201: 1 contact\(s\) registered \(REGISTER from "
                                       rf"127\.0\.0\.1:{setup.sip_port}\)", timeout=EVENT_TIMEOUT_S)
                await phone.wait_for("Using wav files instead of soundcard",
                                     await phone.command("soundcard use files"))
                await phone.command(f"play {phone_wav}")
                await phone.command(f"record {heard_wav}")
                target = f"sip:support@127.0.0.1:{box.sip_udp}"
                start = await phone.command(f"call {target}")
                call_id = (await phone.wait_for(rf"Establishing call id to {re.escape(target)}, assigned id (\d+)",
                                                start)).group(1)
                await answer_offer(page, "201")
                await phone.wait_for(rf"Media streams established with \S+ for call {call_id} \(audio\)", start)
                await agent_hears_the_phone(page)

                mark, start = len(box.logs), await phone.command("pause")  # re-INVITE with a=sendonly
                await box.wait_for_log(r"INVITE from the caller, we are now recvonly", timeout=EVENT_TIMEOUT_S,
                                       start=mark)
                await phone.wait_for(rf"Call {call_id} with \S+ is now paused\.", start)
                mark, start = len(box.logs), await phone.command(f"resume {call_id}")  # a=sendrecv again
                await box.wait_for_log(r"INVITE from the caller, we are now sendrecv", timeout=EVENT_TIMEOUT_S,
                                       start=mark)
                await phone.wait_for(rf"Media streams established with \S+ for call {call_id} \(audio\)", start)
                await agent_hears_the_phone(page)  # the call carries audio again after the resume

                # the agent holds the phone from the console (our re-INVITE, a=sendonly), then resumes it
                mark, start = len(box.logs), phone.mark()
                await page.click("#btn-hold")
                await box.wait_for_log(r"SIP call \S+: hold accepted", timeout=EVENT_TIMEOUT_S, start=mark)
                await phone.wait_for(rf"Call {call_id} has been paused by \S+\.", start)
                mark, start = len(box.logs), phone.mark()
                await page.click("#btn-hold")  # now labelled Resume
                await box.wait_for_log(r"SIP call \S+: resume accepted", timeout=EVENT_TIMEOUT_S, start=mark)
                await phone.wait_for(rf"Media streams established with \S+ for call {call_id} \(audio\)", start)
                await agent_hears_the_phone(page)

                start = await phone.command("terminate")
                await phone.wait_for(rf"Call {call_id} with \S+ ended", start)
                log = setup.log.read_text(errors="replace")
                # liblinphone answers the strongest challenge (RFC 8760): SHA-256, not the MD5 one
                assert re.search(r"^Authorization: +Digest .*algorithm=SHA-256", log, re.M), "no SHA-256 REGISTER"
                answers = invite_answers(log)
                # initial INVITE, hold (we answer recvonly to its sendonly), resume (sendrecv again)
                assert [direction for _, direction in answers] == ["sendrecv", "recvonly", "sendrecv"], answers
                assert [cseq for cseq, _ in answers] == sorted(cseq for cseq, _ in answers)

            await finish_wrapup(page, box)
        assert await box.stop() == 0

    await assert_answered_call_recorded(box.data_dir)

    # what linphonec decoded from the box and wrote with "record"
    with wave.open(str(heard_wav)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[::channels]
    assert abs(peak_hz(heard, rate) - AGENT_TONE_HZ) <= TONE_TOLERANCE_HZ  # the agent's voice reached the phone
    assert loud_seconds(heard, rate) > TALK_S


async def test_linphonec_with_a_wrong_password_is_refused(tmp_path: Path) -> None:
    """The registrar's refusal as a real phone sees it: challenge, then 403 to the wrong answer."""
    async with running_box(tmp_path, sip_extra=EXTENSION_201_BOTH) as box:
        setup = write_linphone_config(tmp_path / "linphone", box_port=box.sip_udp, user="201", password="guess")
        async with running_linphonec(setup) as phone:
            await phone.wait_for(r"Password for 201 on branchline:")  # liblinphone asks after the 403
            statuses = re.findall(r"^SIP/2\.0 (\d{3}) .*\n(?:.+\n)*?CSeq: \d+ REGISTER",
                                  setup.log.read_text(errors="replace"), re.M)
            assert statuses[:2] == ["401", "403"], statuses
        assert not any("SIP extension 201:" in line for line in box.logs)  # no binding was made
        assert await box.stop() == 0
