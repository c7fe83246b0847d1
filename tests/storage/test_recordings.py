"""Recordings: crash repair at start-up with media.recorder, linking, encryption at rest."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from appliance.storage import AlarmKind, EncryptedChunkSink, Store, export_recording
from appliance.storage import crypto
from media.frames import FRAME_BYTES
from media.recorder import BYTE_RATE, HEADER_BYTES, FileSink, StereoWavRecorder, marker_path
from tests.storage.conftest import make_call

KEY = bytes(range(32))
LEFT = struct.pack("<160h", *range(160))
RIGHT = struct.pack("<160h", *range(-160, 0))


class _PowerCutAtClose:
    """Wraps a sink: all audio is written and synced, then the header patch 'loses power'."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def sync(self) -> None:
        self._inner.sync()

    def patch(self, offset: int, data: bytes) -> None:
        raise OSError(5, "simulated power cut")

    def close(self) -> None:
        self._inner.close()


def _record_and_crash(path: Path, factory, frames: int) -> None:
    rec = StereoWavRecorder(path, sink_factory=lambda p: _PowerCutAtClose(factory(p)))
    rec.start()
    for _ in range(frames):
        rec.write(LEFT, RIGHT)
    stats = rec.close_blocking(timeout=10.0)
    assert stats.failed and stats.frames_written == frames
    assert marker_path(path).exists()  # left open, as after a crash


async def test_open_recording_is_repaired_and_linked_at_start(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    rel = "2026/12/03/c-rec.wav"
    await s.save_call(make_call("c-rec", recording_path=rel))
    path = s.recordings_dir() / rel
    await s.close()
    path.parent.mkdir(parents=True)
    _record_and_crash(path, FileSink, frames=150)  # 3 s
    s = await Store.open(tmp_path / "d")
    try:
        assert not marker_path(path).exists()
        raw = path.read_bytes()
        assert struct.unpack_from("<I", raw, 40)[0] == 150 * FRAME_BYTES * 2 == len(raw) - HEADER_BYTES
        rec = await s.get_call("c-rec")
        assert rec.recording_path == rel and rec.recording_s == 3.0
        assert await s.recording_for("c-rec") == path
        assert [a.kind for a in s.alarms()] == [AlarmKind.RECORDING_REPAIRED]
    finally:
        await s.close()


async def test_orphan_recording_is_repaired_without_a_record(tmp_path: Path) -> None:
    path = tmp_path / "d" / "recordings" / "2026" / "12" / "03" / "nobody.wav"
    path.parent.mkdir(parents=True)
    _record_and_crash(path, FileSink, frames=10)
    s = await Store.open(tmp_path / "d")
    try:
        assert not marker_path(path).exists() and await s.get_call("nobody") is None
    finally:
        await s.close()


async def test_encrypted_recording_crash_leaves_decryptable_prefix(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", encryption_key=KEY)
    rel = "2026/12/03/c-enc.wav"
    await s.save_call(make_call("c-enc", recording_path=rel))
    factory = s.recording_sink_factory()
    await s.close()
    path = tmp_path / "d" / "recordings" / rel
    path.parent.mkdir(parents=True)
    _record_and_crash(path, factory, frames=250)  # 5 s: several chunks
    raw = path.read_bytes()
    assert raw.startswith(crypto.MAGIC) and LEFT[:64] not in raw  # nothing in clear
    with open(path, "ab") as f:
        f.write(b"\x01\x00\x01\x00\x00torn record")  # a record cut off by the power cut
    s = await Store.open(tmp_path / "d", encryption_key=KEY)
    try:
        assert not marker_path(path).exists()
        assert (await s.get_call("c-enc")).recording_s == 5.0
        out = tmp_path / "export.wav"
        assert export_recording(path, KEY, out) == 5.0
        wav = out.read_bytes()
        assert struct.unpack_from("<I", wav, 40)[0] == len(wav) - HEADER_BYTES == 5 * BYTE_RATE
        first = struct.unpack_from("<4h", wav, HEADER_BYTES)
        assert first == (0, -160, 1, -159)  # left = customer, right = agent, interleaved
    finally:
        await s.close()


async def test_encrypted_sink_clean_close_and_wrong_key(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    rec = StereoWavRecorder(path, sink_factory=lambda p: EncryptedChunkSink(p, KEY))
    rec.start()
    for _ in range(60):
        rec.write(LEFT, RIGHT)
    assert (rec.close_blocking(timeout=10.0)).finished
    plain, complete = crypto.decrypt_bytes(path.read_bytes(), KEY)
    assert complete and struct.unpack_from("<I", plain, 40)[0] == 60 * FRAME_BYTES * 2  # header patch applied
    with pytest.raises(crypto.DecryptError, match="wrong key"):
        crypto.decrypt_bytes(path.read_bytes(), bytes(32))


async def test_encrypted_recording_without_key_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "d" / "recordings" / "x.wav"
    path.parent.mkdir(parents=True)
    _record_and_crash(path, lambda p: EncryptedChunkSink(p, KEY), frames=10)
    s = await Store.open(tmp_path / "d")  # no key configured
    try:
        assert [a.kind for a in s.alarms()] == [AlarmKind.RECORDING_UNREPAIRABLE]
        assert marker_path(path).exists()  # kept for a later start with the key
    finally:
        await s.close()


async def test_a_deleted_recording_is_cleared_on_every_part_of_a_transferred_call(store: Store) -> None:
    from dataclasses import replace

    rel = "2026/06/01/t1.wav"
    parts = [replace(make_call("t1", recording_path=rel), parent_call_id="t1"),
             replace(make_call("t1-2", recording_path=rel), segment=2, parent_call_id="t1"),
             replace(make_call("t1-3", recording_path=rel), segment=3, parent_call_id="t1")]
    other = make_call("t10", recording_path="2026/06/01/t10.wav")  # a call whose id merely starts alike
    for rec in (*parts, other):
        await store.save_call(rec)
    assert await store.recording_removed("t1") == 3
    assert [(await store.get_call(c)).recording_path for c in ("t1", "t1-2", "t1-3")] == [None, None, None]
    assert (await store.get_call("t10")).recording_path == "2026/06/01/t10.wav"
