"""Shard envelope: torn, truncated and zero-filled files are detected, never parsed."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.storage import envelope

TABLES = {"call": {str(i): {"_key": f"c{i}", "n": i, "txt": "é" * (i % 5)} for i in range(1, 60)}}
RAW = envelope.encode(TABLES)


def test_round_trip_and_valid_json() -> None:
    assert envelope.decode(RAW) == TABLES
    assert json.loads(RAW)["tables"] == TABLES  # still plain JSON for operators


@given(cut=st.integers(min_value=0, max_value=len(RAW) - 1))
def test_truncation_anywhere_is_detected(cut: int) -> None:
    with pytest.raises(envelope.CorruptFileError):
        envelope.decode(RAW[:cut])


@settings(max_examples=200)
@given(start=st.integers(min_value=0, max_value=len(RAW) - 1), length=st.integers(min_value=1, max_value=4096))
def test_zero_fill_anywhere_is_detected(start: int, length: int) -> None:
    torn = bytearray(RAW)
    end = min(len(RAW), start + length)
    if torn[start:end] == bytes(end - start):
        return  # already zeros: nothing changed
    torn[start:end] = bytes(end - start)
    with pytest.raises(envelope.CorruptFileError):
        envelope.decode(bytes(torn))


@given(cut=st.integers(min_value=envelope.HEADER_LEN, max_value=len(RAW) - 2))
def test_new_prefix_with_old_suffix_is_detected(cut: int) -> None:
    """The in-place-rewrite failure of stock TinyDB: new prefix, old tail (resurrected rows)."""
    newer = envelope.encode({"call": {k: v for k, v in TABLES["call"].items() if int(k) % 3}})
    torn = newer[:cut] + RAW[cut:] if cut < len(newer) else newer
    if torn in (newer, RAW):
        return
    with pytest.raises(envelope.CorruptFileError):
        envelope.decode(torn)


def test_single_bit_flip_in_body_is_detected() -> None:
    torn = bytearray(RAW)
    torn[envelope.HEADER_LEN + 100] ^= 0x04
    with pytest.raises(envelope.CorruptFileError, match="checksum"):
        envelope.decode(bytes(torn))
