"""Replacing a small file so that a power cut leaves either the old or the new version.

The bytes go to ``<name>.tmp`` (created with ``mode``), are fsync'd, renamed over the target,
and the folder is fsync'd. No dependencies: the config writer, the SIP line's registrations
file and the storage package all use it. Blocking: run it off the event loop when it matters.
"""
from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Durably replace ``path`` with ``data`` (its folder is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
