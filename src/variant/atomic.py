"""Atomic writes: fill a temporary sibling, then swap it into place with `os.replace`.

A reader never sees a half-written file or directory, and a failure leaves the old one as it was.
Temporary names start with `.NAME.` and files end in `TMP_SUFFIX` (unless a writer needs another
extension, e.g. `np.savez` appends `.npz`), so stale ones left by a killed process can be found.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_directory(directory: str | Path, *, prefix: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `directory` (an old one is removed).

    A failure inside the block leaves `directory` as it was and removes the temporary folder, so a
    reader never sees a half-written directory. The temporary folder and the old directory (while
    it is swapped out) are named `PREFIX<random>` and `PREFIXold`; `prefix` defaults to `.NAME.`.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{directory.name}." if prefix is None else prefix
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=directory.parent))
    try:
        yield tmp
        if directory.exists():
            old = directory.with_name(f"{prefix}old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path, *, suffix: str = TMP_SUFFIX,
                fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path` for the caller to write; on success it replaces
    `path`, on failure it is removed.

    The name `.NAME.<pid>.<random><suffix>` is unique per process and call, so ranks or threads
    writing the same file never share a temporary. The file is not created in advance, so it
    gets the usual permissions (`tempfile.mkstemp` would make it private). `fsync` flushes the
    data to disk before the rename (checkpoints: a crash leaves the old file or the new one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_file(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def fsync_directory(path: str | Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on every platform / filesystem
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # read-only descriptors cannot be flushed on every platform
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
