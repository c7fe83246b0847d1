"""Encryption at rest for recordings: AES-256-GCM by chunk, so a crash leaves a decryptable prefix.

File layout::

    MAGIC (8) | file_id (8 random bytes)
    then records: kind (1) | length (4, big endian) | ciphertext+tag (length bytes)

``kind`` is DATA (appended bytes) or PATCH (8-byte offset + bytes that overwrite the
logical stream, used for the WAV header at close). Every record is sealed on its own:
nonce = file_id | counter (4 bytes), AAD = MAGIC | file_id | counter | kind, so records
cannot be reordered, replayed from another file, or altered. A record cut short by a
crash fails its length or tag check and everything before it is still readable.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"BLENC1\x00\x00"
CHUNK_BYTES = 64 * 1024  # plaintext per DATA record: 4 s of stereo audio; bounds what a crash can lose before sync
_DATA, _PATCH = 1, 2
_REC_HEAD = struct.Struct(">BI")
_TAG = 16


class DecryptError(ValueError):
    pass


def _aad(file_id: bytes, counter: int, kind: int) -> bytes:
    return MAGIC + file_id + struct.pack(">IB", counter, kind)


def _nonce(file_id: bytes, counter: int) -> bytes:
    return file_id + struct.pack(">I", counter)


def is_encrypted(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class EncryptedChunkSink:
    """A ``media.recorder.ByteSink`` that encrypts. ``sync`` seals the pending bytes as a record first."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("recording key must be 16, 24 or 32 bytes")
        self._aead = AESGCM(key)
        self._file_id = os.urandom(8)
        self._counter = 0
        self._pending = bytearray()
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._f.write(MAGIC + self._file_id)

    def _seal(self, kind: int, plain: bytes) -> None:
        ct = self._aead.encrypt(_nonce(self._file_id, self._counter), plain, _aad(self._file_id, self._counter, kind))
        self._f.write(_REC_HEAD.pack(kind, len(ct)) + ct)
        self._counter += 1

    def _seal_pending(self) -> None:
        if self._pending:
            self._seal(_DATA, bytes(self._pending))
            self._pending.clear()

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= CHUNK_BYTES:
            self._seal(_DATA, bytes(self._pending[:CHUNK_BYTES]))
            del self._pending[:CHUNK_BYTES]

    def sync(self) -> None:
        self._seal_pending()
        self._f.flush()
        os.fsync(self._f.fileno())

    def patch(self, offset: int, data: bytes) -> None:
        self._seal_pending()
        self._seal(_PATCH, struct.pack(">Q", offset) + data)

    def close(self) -> None:
        self._seal_pending()
        self._f.close()


def decrypt_bytes(raw: bytes, key: bytes) -> tuple[bytes, bool]:
    """(plaintext prefix, complete). ``complete`` is False when a torn or bad record ended the stream."""
    if raw[: len(MAGIC)] != MAGIC or len(raw) < len(MAGIC) + 8:
        raise DecryptError("not an encrypted recording")
    aead = AESGCM(key)
    file_id = raw[len(MAGIC) : len(MAGIC) + 8]
    pos, counter = len(MAGIC) + 8, 0
    out = bytearray()
    while pos < len(raw):
        if pos + _REC_HEAD.size > len(raw):
            return bytes(out), False
        kind, length = _REC_HEAD.unpack_from(raw, pos)
        end = pos + _REC_HEAD.size + length
        if kind not in (_DATA, _PATCH) or length < _TAG or end > len(raw):
            return bytes(out), False
        try:
            plain = aead.decrypt(_nonce(file_id, counter), raw[pos + _REC_HEAD.size : end], _aad(file_id, counter, kind))
        except Exception:  # cryptography raises InvalidTag; a wrong key looks the same as a torn record
            if counter == 0:
                raise DecryptError("first record fails authentication: wrong key or not our file") from None
            return bytes(out), False
        if kind == _DATA:
            out += plain
        else:
            (offset,) = struct.unpack_from(">Q", plain)
            patch = plain[8:]
            out[offset : offset + len(patch)] = patch
        pos, counter = end, counter + 1
    return bytes(out), True


def valid_length(raw: bytes, key: bytes) -> int:
    """Bytes of ``raw`` covered by authentic records (where to truncate a torn file)."""
    aead = AESGCM(key)
    file_id = raw[len(MAGIC) : len(MAGIC) + 8]
    pos, counter = len(MAGIC) + 8, 0
    while pos + _REC_HEAD.size <= len(raw):
        kind, length = _REC_HEAD.unpack_from(raw, pos)
        end = pos + _REC_HEAD.size + length
        if kind not in (_DATA, _PATCH) or length < _TAG or end > len(raw):
            break
        try:
            aead.decrypt(_nonce(file_id, counter), raw[pos + _REC_HEAD.size : end], _aad(file_id, counter, kind))
        except Exception:  # InvalidTag: the torn tail starts here
            break
        pos, counter = end, counter + 1
    return pos


def export_recording(path: Path, key: bytes, out_path: Path) -> float:
    """Decrypt ``path`` to a plain WAV at ``out_path``, fixing the header from the data length.

    Returns the seconds of audio. Works on recordings left open by a crash (their prefix).
    """
    from media.recorder import BLOCK_ALIGN, BYTE_RATE, HEADER_BYTES, wav_header

    plain, _complete = decrypt_bytes(path.read_bytes(), key)
    data = plain[HEADER_BYTES:]
    data = data[: len(data) - len(data) % BLOCK_ALIGN]
    out_path.write_bytes(wav_header(len(data)) + data)
    return len(data) / BYTE_RATE
