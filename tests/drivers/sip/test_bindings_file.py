"""Registrations kept across restarts: real SipLines on 127.0.0.1 sharing a bindings file in tmp_path,
phones played by raw sockets. Every wait has a timeout; writes are awaited with ``wait_idle``
(or ``stop``, which always writes the final state), never by sleeping."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from appliance.lines import DialFailed, DialFailure
from drivers.sip import bindings_file
from drivers.sip.bindings_file import BindingsFileError, credentials_mac, decode, encode
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.registrar import Binding
from tests.drivers.sip.outgoing_peer import EXT_PASSWORD, TcpPhone, next_request, reply
from tests.drivers.sip.outgoing_peer import register as register_over
from tests.drivers.sip.peer import SipPeer
from tests.drivers.sip.test_line_security import USERS
from tests.drivers.sip.test_qualify import answer, barrier, next_options, sign_in

WAIT_S = 3.0
LOG = "drivers.sip.bindings_file"


async def _no_calls(call) -> None:
    raise AssertionError("no inbound call expected")


@pytest.fixture
async def box(tmp_path: Path):
    """start(**config) -> a started line on ``tmp_path/run/sip-bindings.json``; stop(line) stops it once."""
    running: list[SipLine] = []
    peers: list[SipPeer] = []

    async def start(**overrides) -> SipLine:
        cfg = {"host": "127.0.0.1", "port": 0, "rtp_port_range": None, "users": USERS, "qualify_s": 0,
               "bindings_file": str(tmp_path / "run" / "sip-bindings.json")}
        cfg.update(overrides)
        line = SipLine(SipLineConfig(**cfg), _no_calls)
        await line.start()
        running.append(line)
        return line

    async def stop(line: SipLine) -> None:
        running.remove(line)
        await line.stop()

    async def phone(line: SipLine) -> SipPeer:
        peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
        peers.append(peer)
        return peer

    start.stop, start.phone = stop, phone
    yield start
    for peer in peers:
        peer.close()
    for line in running:
        await line.stop()


def saved(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "sip-bindings.json").read_text())


async def written(line: SipLine) -> None:
    async with asyncio.timeout(WAIT_S):
        await line._bindings_file.wait_idle()


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]


async def test_registration_survives_a_restart_and_the_phone_is_dialled_where_it_registered(box, tmp_path) -> None:
    first = await box()
    phone = await box.phone(first)
    await sign_in(phone, expires=300)
    [before] = first.bindings("201")
    await box.stop(first)
    [doc] = saved(tmp_path)["bindings"]
    assert doc["source"] == ["127.0.0.1", phone.port] and doc["transport"] == "udp"
    assert abs(doc["expires_at"] - (time.time() + 300)) < 5  # wall clock, not the loop's

    second = await box()
    [after] = second.bindings("201")
    loop_now = asyncio.get_running_loop().time()
    assert 295 <= after.remaining(loop_now) <= 300  # what was left, counted on the new line's clock
    assert (after.contact, after.source, after.transport, after.call_id, after.cseq) == (
        before.contact, ("127.0.0.1", phone.port), "udp", before.call_id, before.cseq)
    call = await second.dial_extension("201")
    invite = await next_request(phone.recv, "INVITE")
    assert str(invite.uri) == f"sip:201@127.0.0.1:{phone.port}" and phone.last_sender == ("127.0.0.1",
                                                                                           second.udp_port)
    phone.target = ("127.0.0.1", second.udp_port)  # the new line listens on a new port (port=0 in tests)
    phone.send(reply(invite, 486))
    await next_request(phone.recv, "ACK")
    async with asyncio.timeout(WAIT_S):
        await call.wait_ended()


async def test_restored_udp_phone_is_qualified_at_once(box) -> None:
    first = await box(qualify_s=30.0)
    phone = await box.phone(first)
    await sign_in(phone)
    await box.stop(first)
    second = await box(qualify_s=30.0)  # an interval far longer than the wait: only "at once" explains an OPTIONS
    assert second.reachable("201") is None
    phone.target = ("127.0.0.1", second.udp_port)
    answer(phone, await next_options(phone))
    await barrier(phone)
    assert second.reachable("201") is True


async def test_expired_binding_is_not_restored_and_leaves_the_file(box, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    first = await box()
    await sign_in(await box.phone(first), user="201")
    await sign_in(await box.phone(first), user="202")
    await box.stop(first)
    doc = saved(tmp_path)
    for entry in doc["bindings"]:
        if entry["aor"] == "202":
            entry["expires_at"] = time.time() - 1
    (tmp_path / "run" / "sip-bindings.json").write_text(json.dumps(doc))

    second = await box()
    assert len(second.bindings("201")) == 1 and second.bindings("202") == ()
    assert any("1 registration(s) restored" in m and "(1 expired" in m for m in caplog.messages)
    await written(second)
    assert [e["aor"] for e in saved(tmp_path)["bindings"]] == ["201"]


async def test_unregister_removes_the_binding_from_the_file(box, tmp_path) -> None:
    line = await box()
    phone = await box.phone(line)
    await sign_in(phone)
    await written(line)
    assert [e["aor"] for e in saved(tmp_path)["bindings"]] == ["201"]
    await sign_in(phone, expires=0)
    await written(line)
    assert saved(tmp_path)["bindings"] == []


async def test_removed_or_repassworded_extension_is_not_restored(box, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    first = await box()
    await sign_in(await box.phone(first), user="201")
    await sign_in(await box.phone(first), user="202")
    await box.stop(first)
    second = await box(users=(("201", "a-new-password"),))  # 201's password changed, 202 removed
    assert second.bindings("201") == () and second.bindings("202") == ()
    assert any("0 registration(s) restored" in m and "2 of removed or re-passworded" in m for m in caplog.messages)


def _valid_file() -> bytes:
    salt = "00" * 16
    binding = Binding("201", "sip:201@127.0.0.1:5070", 1000.0, "c1", 2, ("127.0.0.1", 5070), "udp")
    return encode([binding], loop_now=0.0, wall_now=time.time(), salt=salt,
                  mac=lambda s, aor: credentials_mac(s, aor, "branchline", dict(USERS)[aor]))


@pytest.mark.parametrize("content", [
    pytest.param(b"\x00\x17garbage\xff", id="binary"),
    pytest.param(_valid_file()[:60], id="truncated"),
    pytest.param(b'{"hello": "world"}', id="foreign-json"),
    pytest.param(b"[]", id="a-list"),
    pytest.param(_valid_file().replace(b'"version": 1', b'"version": 2'), id="newer-version"),
    pytest.param(_valid_file().replace(b'"cseq": 2', b'"cseq": "2"'), id="bad-field"),
])
async def test_unreadable_file_is_set_aside_with_one_warning_and_the_line_starts_empty(box, tmp_path, caplog,
                                                                                        content) -> None:
    path = tmp_path / "run" / "sip-bindings.json"
    path.parent.mkdir()
    path.write_bytes(content)
    line = await box()
    assert line.bindings("201") == ()
    [warning] = warnings(caplog)
    assert str(path) in warning and "starting with none" in warning and f"kept as {path}.bad" in warning
    assert (tmp_path / "run" / "sip-bindings.json.bad").read_bytes() == content and not path.exists()
    await sign_in(await box.phone(line))  # and registering works, into a fresh file
    await written(line)
    assert [e["aor"] for e in saved(tmp_path)["bindings"]] == ["201"]


async def test_unwritable_folder_warns_once_and_the_line_keeps_working(box, tmp_path, caplog) -> None:
    (tmp_path / "not-a-folder").write_text("")
    line = await box(bindings_file=str(tmp_path / "not-a-folder" / "sip-bindings.json"))
    phone = await box.phone(line)
    await sign_in(phone)
    await written(line)
    await sign_in(phone)
    await written(line)
    assert len(line.bindings("201")) == 1 and line._bindings_file.writes == 0
    await box.stop(line)  # the final write fails too: no exception
    cannot_save = [m for m in warnings(caplog) if "cannot save registrations" in m]
    assert len(cannot_save) == 1 and "not-a-folder/sip-bindings.json" in cannot_save[0]


async def test_burst_of_registrations_is_written_twice_first_and_final(box, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bindings_file, "COALESCE_S", 60.0)  # nothing but the first change and stop() may write
    line = await box()
    phones = [await box.phone(line) for _ in range(4)]
    for n in range(20):
        await sign_in(phones[n % 4], user="201" if n % 2 else "202")
    await box.stop(line)
    assert line._bindings_file.writes == 2
    assert sorted(e["source"][1] for e in saved(tmp_path)["bindings"]) == sorted(p.port for p in phones)


async def test_later_changes_are_written_without_a_stop(box, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bindings_file, "COALESCE_S", 0.05)
    line = await box()
    await sign_in(await box.phone(line), user="201")
    await written(line)
    await sign_in(await box.phone(line), user="202")
    await written(line)
    assert line._bindings_file.writes == 2
    assert sorted(e["aor"] for e in saved(tmp_path)["bindings"]) == ["201", "202"]


async def test_tcp_binding_is_restored_unreachable_until_the_phone_connects_again(box) -> None:
    users = (("201", EXT_PASSWORD),)
    first = await box(users=users, auth_algorithms=("MD5",))
    phone = await TcpPhone().open(first.tcp_port)
    try:
        await register_over(phone.send, phone.recv, first.tcp_port, phone.port, transport="TCP")
        await box.stop(first)
    finally:
        await phone.close()
    second = await box(users=users, auth_algorithms=("MD5",))
    [binding] = second.bindings("201")
    assert binding.transport == "tcp" and second.reachable("201") is False
    assert second.reachability(binding).reason == "its TCP connection is closed"
    with pytest.raises(DialFailed) as failed:
        await second.dial_extension("201")
    assert failed.value.reason is DialFailure.LINE_DOWN
    back = await TcpPhone().open(second.tcp_port)  # the phone notices and connects again
    try:
        await register_over(back.send, back.recv, second.tcp_port, back.port, transport="TCP")
        assert second.reachable("201") is True
    finally:
        await back.close()


# ---- the file format, clock conversion (pure) ------------------------------------------------------------------
def _mac(salt: str, aor: str) -> str | None:
    return credentials_mac(salt, aor, "branchline", "pw") if aor == "201" else None


def test_round_trip_converts_between_the_loop_clock_and_the_wall_clock() -> None:
    b = Binding("201", "sip:201@10.0.0.5:5060", 150.0, "abc", 7, ("203.0.113.9", 40000), "tls")
    data = encode([b], loop_now=100.0, wall_now=1_700_000_000.0, salt="ab" * 16, mac=_mac)
    assert json.loads(data)["bindings"][0]["expires_at"] == 1_700_000_050.0
    # restarted 20 s later (wall clock), on a loop clock now at 5.0
    [back], expired, stale = decode(data, loop_now=5.0, wall_now=1_700_000_020.0, max_remaining=3600, mac=_mac)
    assert back == Binding("201", "sip:201@10.0.0.5:5060", 35.0, "abc", 7, ("203.0.113.9", 40000), "tls")
    assert (expired, stale) == (0, 0)


def test_a_clock_that_went_back_or_a_lowered_maximum_never_lengthens_a_binding() -> None:
    b = Binding("201", "sip:201@10.0.0.5:5060", 400.0, "abc", 7, ("10.0.0.5", 5060), "udp")
    data = encode([b], loop_now=100.0, wall_now=1_000_000.0, salt="ab" * 16, mac=_mac)  # 300 s left at save
    [back], _, _ = decode(data, loop_now=0.0, wall_now=900_000.0, max_remaining=3600, mac=_mac)  # no RTC: 1970ish
    assert back.expires_at == 300.0
    [capped], _, _ = decode(data, loop_now=0.0, wall_now=1_000_000.0, max_remaining=60, mac=_mac)
    assert capped.expires_at == 60.0
    assert decode(data, loop_now=0.0, wall_now=1_000_300.0, max_remaining=3600, mac=_mac) == ([], 1, 0)


@pytest.mark.parametrize("doc", [
    {"format": "branchline-sip-bindings", "version": 1, "saved_at": 1.0, "salt": "zz", "bindings": []},
    {"format": "branchline-sip-bindings", "version": 1, "saved_at": "x", "salt": "ab", "bindings": []},
    {"format": "branchline-sip-bindings", "version": 1, "saved_at": 1.0, "salt": "ab", "bindings": {}},
    {"format": "branchline-sip-bindings", "version": 1, "saved_at": 1.0, "salt": "ab", "bindings": [
        {"aor": "201", "contact": "c", "expires_at": 9e9, "call_id": "x", "cseq": 1, "source": ["h", 70000],
         "transport": "udp", "auth": ""}]},
    {"format": "branchline-sip-bindings", "version": 1, "saved_at": 1.0, "salt": "ab", "bindings": [
        {"aor": "201", "contact": "c", "expires_at": 9e9, "call_id": "x", "cseq": 1, "source": ["h", 5060],
         "transport": "sctp", "auth": ""}]},
])
def test_malformed_documents_are_refused(doc) -> None:
    with pytest.raises(BindingsFileError):
        decode(json.dumps(doc).encode(), loop_now=0.0, wall_now=2.0, max_remaining=3600, mac=_mac)
