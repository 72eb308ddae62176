"""`variant eval` end to end on the tiny random model: table, JSON, resume, shards, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import variant
from variant.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = ["eval", "--model", "random:tiny", "--num-per-class", "2", "--batch-size", "2",
        "--no-progress"]


def _pngs(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_eval_two_plans_table_json_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = BASE + ["--plans", "full", "d2", "--reference-count", "200", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "| full | 20 |" in captured.out and "| d2 | 20 |" in captured.out
    assert "FID from 20 samples" in captured.err  # warned, with the number
    rows = json.loads((out / "eval.json").read_text())["rows"]
    assert [r["plan"] for r in rows] == ["full", "d2"]
    for r in rows:
        assert r["fid"] > 0 and 0 <= r["class_accuracy"] <= 1 and r["generated"] == 20
    assert (out / "full.npz").is_file() and (out / "d2.npz").is_file()
    files = _pngs(out)
    assert len(files) == 40
    # A rerun samples nothing and reproduces the numbers.
    assert main(args) == 0
    again = json.loads((out / "eval.json").read_text())["rows"]
    assert [r["generated"] for r in again] == [0, 0]
    assert [r["fid"] for r in again] == pytest.approx([r["fid"] for r in rows])
    assert _pngs(out) == files


def test_eval_ranks_without_process_group(tmp_path, capsys):
    out, single = tmp_path / "sharded", tmp_path / "single"
    common = BASE + ["--plans", "d2", "--metric", "none"]
    # Rank 0 alone cannot finish: clear error, its share is kept.
    assert main(common + ["--out", str(out), "--rank", "0", "--world-size", "2"]) == 2
    assert "still lacks" in capsys.readouterr().err
    kept = _pngs(out)
    assert 0 < len(kept) < 20
    assert main(common + ["--out", str(out), "--rank", "1", "--world-size", "2"]) == 0
    assert main(common + ["--out", str(out), "--rank", "0", "--world-size", "2"]) == 0
    assert main(common + ["--out", str(single)]) == 0
    assert _pngs(out) == _pngs(single)


@pytest.mark.parametrize("extra, message", [
    (["--plans", "full", "d9"], "subnet_depth must be in 1..4"),
    (["--plans", "[[0], [0, 5], [1]]"], "layer 5"),
    (["--metric", "inception", "--reference", "nowhere.npz"], "torch-fidelity"),
    (["--reference", "missing-folder"], "does not exist"),
    (["--num-classes", "11"], "exceeds the model's 10"),
])
def test_bad_input_fails_before_sampling(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    out = tmp_path / "run"
    assert main(BASE + extra + ["--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not _pngs(tmp_path)


@pytest.mark.slow
def test_torchrun_two_processes_write_the_same_files_as_one(tmp_path):
    """Real torchrun with a gloo process group: barrier, rank-0 scoring, identical images."""
    src = str(Path(variant.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])), "OMP_NUM_THREADS": "1"}
    args = BASE[1:] + ["--plans", "full", "d2", "--reference-count", "100"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "variant", "eval", *args, "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("| full | 20 |") == 1  # only rank 0 prints the table
    assert main(["eval", *args, "--metric", "none", "--out", str(tmp_path / "one")]) == 0
    assert _pngs(tmp_path / "ddp") == _pngs(tmp_path / "one")
    npz = "full.npz"
    assert (tmp_path / "ddp" / npz).read_bytes() == (tmp_path / "one" / npz).read_bytes()
