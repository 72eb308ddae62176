"""Atomic file and directory writes: all or nothing, no temporaries left behind."""

import os
import stat

import pytest

from variant.atomic import (
    TMP_SUFFIX,
    atomic_directory,
    atomic_file,
    write_bytes_atomic,
    write_text_atomic,
)


def test_atomic_file_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_text_atomic(path, "old")
    with atomic_file(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".out.json.")
        assert tmp.name.endswith(TMP_SUFFIX) and not tmp.exists()
        tmp.write_text("new")
        assert path.read_text() == "old"  # readers see the old file until the block ends
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["out.json"]


def test_atomic_file_failure_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []
    write_bytes_atomic(path, b"ok", fsync=True)
    with pytest.raises(RuntimeError):
        with atomic_file(path, suffix=".tmp.npz") as tmp:
            assert tmp.name.endswith(".tmp.npz")
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert os.listdir(tmp_path) == ["out.bin"] and path.read_bytes() == b"ok"


def test_atomic_file_names_are_unique_and_permissions_usual(tmp_path):
    path = tmp_path / "x.png"
    with atomic_file(path) as a, atomic_file(path) as b:
        assert a != b and str(os.getpid()) in a.name
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert path.read_bytes() == b"a"  # the last to finish wins; both were complete
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)


def test_atomic_directory_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, prefix=".tmp-model-") as tmp:
            assert tmp.name.startswith(".tmp-model-")
            (tmp / "a.txt").write_text("2")
            raise RuntimeError
    assert (target / "a.txt").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["model"]
