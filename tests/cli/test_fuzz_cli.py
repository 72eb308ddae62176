"""Issue 18's CLI fuzz corpus: every bad invocation is refused with exit code 2, no traceback,
a message naming the flag or file, and no file created or changed anywhere we can see.

The corpus runs in-process (`variant.cli.main.main(argv)`, SystemExit caught, stderr captured),
so ~150 cases take seconds; a few that need a real process run as subprocesses at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_corpus import REPO, cases, expand, prepare, snapshot

from helpers import main_in_process

CASES = cases()


def test_corpus_is_large_enough():
    assert len(CASES) >= 100
    assert len({tuple(argv) for argv, _ in CASES}) == len(CASES), "duplicate cases"


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    work, outside = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("outside")
    prepare(work)
    return work, outside


def watched(work: Path, outside: Path) -> dict:
    """Everything a refused command could have written: the test's folders, the repository's
    top level and committed front, the current folder, the filesystem root and home."""
    return {**snapshot(work, outside, REPO / "docs" / "reproduction" / "front"),
            **snapshot(REPO, Path.cwd(), Path("/"), Path.home(), recursive=False)}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("argv, names", CASES, ids=lambda c: " ".join(c)[:60]
                         if isinstance(c, list) else None)
def test_bad_invocation_is_refused_cleanly(argv, names, places, monkeypatch):
    work, outside = places
    monkeypatch.chdir(work)
    before = watched(work, outside)
    code, err = main_in_process(expand(argv, work, outside))
    assert code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1] if err.strip() else ""
    assert message.startswith("variant "), err
    assert names in message, f"{names!r} not named in: {message}"
    assert watched(work, outside) == before, "a refused command changed files"


@pytest.mark.parametrize("argv, names", [
    (["sample", "--model", "random:tiny", "--out", ""], "--out"),
    (["tune", "--model", "random:tiny", "--out", "", "--specs", "full"], "--out"),
    (["plan", "--front", "/dev/zero", "--max-kv", "1MiB"], "--front"),
    (["plan", "--plans", "[[0,7.9]]", "--depth", "8"], "7.9"),
])
def test_bad_invocation_in_a_real_process(argv, names, tmp_path):
    """The console entry point (interpreter start, real exit code, real stderr)."""
    proc = subprocess.run([sys.executable, "-m", "variant", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and names in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_file_watch_sees_a_write(places, monkeypatch):
    """Control: a good invocation that writes a file changes what `watched` returns."""
    work, outside = places
    monkeypatch.chdir(work)
    before = watched(work, outside)
    code, err = main_in_process(["plan", "--depth", "8", "--json", str(outside / "rows.json")])
    assert code == 0, err
    assert watched(work, outside) != before
    (outside / "rows.json").unlink()
