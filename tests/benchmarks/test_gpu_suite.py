"""benchmarks/gpu_suite.py --tiny: the suite's code paths on CPU, its files and their fields, a
budget that stops it cleanly, and a clear refusal of a wrong --official path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
SAMPLING_KEYS = {"model", "impl", "plan", "batch", "dtype", "mode", "first_call_s",
                 "ms_per_image", "images_per_s", "transformer_ms_per_image",
                 "peak_growth_bytes", "kv_bytes", "compile_fell_back"}


def run_suite(*args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(SUITE), "--tiny", "--threads", "1", "--repeats", "1",
                           *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    proc = run_suite("--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_tiny_suite_measures_every_row(tiny_run):
    out, results = tiny_run
    meta = results["meta"]
    assert meta["tiny"] and meta["complete"] and not meta["official"] and meta["device"] == "cpu"
    assert not results["skipped"] and not results["errors"]
    rows = results["sampling"]
    # tiny-d4: full x (1, 2) x (bf16, fp16), d2 x (1, 2), compiled full b2; tiny-d6 adds d4 x 2;
    # each: int8 weights (full+w8, d2+w8 at b2; no fp8 on CPU)
    assert len(rows) == 7 + 9 + 2 * 2 and all(set(r) == SAMPLING_KEYS for r in rows)
    assert {r["impl"] for r in rows} == {"ours"}  # no --official: ours only
    assert all(r["ms_per_image"] > 0 and r["images_per_s"] > 0 and r["kv_bytes"] > 0
               and r["peak_growth_bytes"] is None for r in rows)  # no CUDA: no memory column
    kv = {(r["model"], r["plan"], r["batch"], r["dtype"], r["mode"]): r["kv_bytes"] for r in rows}
    assert kv["tiny-d6", "d2", 2, "bf16", "eager"] < kv["tiny-d6", "full", 2, "bf16", "eager"]
    assert kv["tiny-d6", "full", 2, "bf16", "compiled"] == kv["tiny-d6", "full", 2, "bf16",
                                                              "eager"]
    assert not any(r["compile_fell_back"] for r in rows)
    for model in ("tiny-d4", "tiny-d6"):  # quantised weights leave the KV cache as it was
        for plan in ("full", "d2"):
            assert kv[model, f"{plan}+w8", 2, "bf16", "eager"] == kv[model, plan, 2, "bf16",
                                                                     "eager"]
    train = results["training"]
    assert [(r["impl"], r["plan"]) for r in train] == [("ours", "full"), ("ours", "d2")]
    assert all(r["step_ms"] > 0 for r in train)
    tests = results["tests"]
    assert tests["ran"] and tests["failed"] == 0 and tests["skipped"] >= 1  # gpu tests skip


def test_tiny_suite_writes_the_markdown_tables(tiny_run):
    out, results = tiny_run
    md = (out / "results.md").read_text()
    assert "## Sampling" in md and "## Training step" in md and "## gpu tests" in md
    table = [line for line in md.splitlines() if line.startswith("| tiny-")]
    assert len(table) == len(results["sampling"]) + len(results["training"])


def test_budget_stops_cleanly_keeping_what_was_measured(tmp_path):
    proc = run_suite("--out", str(tmp_path), "--budget-s", "8", "--no-tests")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert not results["meta"]["complete"] and results["skipped"]
    assert len(results["sampling"]) < 16
    assert "## Not measured (budget)" in (tmp_path / "results.md").read_text()


def test_a_wrong_official_path_is_refused(tmp_path):
    proc = run_suite("--out", str(tmp_path), "--official", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "FoundationVision/VAR" in proc.stderr
    assert not (tmp_path / "results.json").exists()
