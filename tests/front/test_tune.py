"""`variant tune` end to end and `variant plan --front` on its front: one small run of the built-in
model (two configurations, two seeds, four images per seed, one timed run each) shared by the
tests through a module fixture; reruns resume, keep or refuse, never mix measurements."""

import contextlib
import io
import json
import math
import shlex
import shutil
from types import SimpleNamespace

import pytest
import torch

import variant.front.tune as tune
from variant.cli.main import main
from variant.efficiency.bench import device_name
from variant.front import (
    FRONT_FORMAT,
)
from variant.front.tune import default_grid
from variant.sampling.configuration import folder_name
from variant.units import fmt_bytes

MIB = 2**20


# ---------------------------------------------------------------------- end to end
SPECS = ["full", "d2+cfgstop4"]


def _tune_args(out, *, num_per_class="2", bench_batch="2"):
    # four images per seed: precision/recall (k=3) needs more than three
    return ["tune", "--model", "builtin", "--out", str(out), "--specs", *SPECS,
            "--seeds", "0", "1", "--num-per-class", num_per_class, "--num-classes", "2",
            "--repeats", "1", "--warmup", "0", "--bench-batch", bench_batch,
            "--reference-count", "100", "--no-progress"]


def _main_captured(argv):
    """`main(argv)` with its output captured, on one thread like the `tuned` run (the thread
    count of the timed runs is part of what a resumed run must match)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One `variant tune` run (sampling in this process on one thread, to leave the other core
    to the timed child process)."""
    out = tmp_path_factory.mktemp("tune") / "t"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, stdout, stderr = _main_captured(_tune_args(out))
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stderr
    front = json.loads((out / "front.json").read_text())
    return out, front, stdout


def test_tune_end_to_end_front(tuned):
    out, front, stdout = tuned
    assert front["format"] == FRONT_FORMAT
    rows = front["rows"]
    assert [r["spec"] for r in rows] == SPECS
    assert [r["family"] for r in rows] == ["depth", "combination"]
    for r in rows:
        fid = r["quality"]["fid"]
        assert len(fid["per_seed"]) == 2 and fid["n"] == 2
        per_seed = [json.loads((out / "configs" / folder_name(r["spec"]) / f"quality_seed{s}.json")
                               .read_text())["fid"] for s in (0, 1)]
        assert fid["per_seed"] == per_seed
        assert fid["mean"] == pytest.approx(sum(per_seed) / 2)
        half = 12.706 * abs(per_seed[0] - per_seed[1]) / math.sqrt(2) / math.sqrt(2)
        # cut at 0: a 2-seed interval (t = 12.7) may reach below the lowest FID there is
        assert fid["low"] == pytest.approx(max(0.0, fid["mean"] - half))
        assert fid["high"] == pytest.approx(fid["mean"] + half)
        assert r["quality"]["num_images_per_seed"] == 4
        for seed in (0, 1):
            images = out / "configs" / folder_name(r["spec"]) / f"seed{seed}"
            assert len(list(images.glob("*.png"))) == 4
        cost = r["cost"]
        assert cost["kv_peak_bytes"] == cost["kv_predicted_bytes"] > 0
        assert cost["total_s"] > 0 and cost["batch"] == 2
        assert cost["device"] == "cpu" and isinstance(cost["threads"], int) and cost["threads"] >= 1
        assert set(r["on_front"]) == {"latency", "kv", "memory"}
        assert all(isinstance(v, bool) for v in r["on_front"].values())
    # d2 with cfg-stop holds less KV than the full network
    assert rows[1]["cost"]["kv_peak_bytes"] < rows[0]["cost"]["kv_peak_bytes"]
    meta = front["meta"]
    assert meta["device_name"] == device_name(torch.device("cpu"))
    assert isinstance(meta["threads"], int) and meta["threads"] >= 1
    assert "Student-t" in meta["interval"] and "seeds" in meta["interval"]
    assert meta["seeds"] == [0, 1] and meta["bench_batch"] == 2 and meta["metric_key"] == "fid"
    assert meta["depth"] == 8 and meta["num_scales"] == 6
    assert "| full | depth |" in stdout and "| d2+cfgstop4 | combination |" in stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "front.png").exists()
    else:
        assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _copy_that_must_not_measure(out, tmp_path, monkeypatch, error):
    """A copy of a finished tune folder, with sampling and timing raising `error`."""
    copy = tmp_path / "t"
    shutil.copytree(out, copy)

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(tune, "sample_to_folder", refuse)
    monkeypatch.setattr(tune, "subprocess", SimpleNamespace(run=refuse))
    return copy


def test_tune_rerun_resumes_without_sampling_or_timing(tuned, monkeypatch, tmp_path):
    out, front, _ = tuned
    copy = _copy_that_must_not_measure(out, tmp_path, monkeypatch, RuntimeError(
        "resuming must not sample or time again"))
    (copy / "front.json").unlink()
    code, stdout, stderr = _main_captured(_tune_args(copy))
    assert code == 0, stderr
    again = json.loads((copy / "front.json").read_text())
    assert again["rows"] == front["rows"]
    assert again["meta"]["seeds"] == front["meta"]["seeds"]


def test_tune_rerun_with_other_settings_does_not_mix_measurements(tuned, monkeypatch, tmp_path):
    out, _, _ = tuned
    copy = _copy_that_must_not_measure(out, tmp_path, monkeypatch, AssertionError(
        "a run with other settings must be refused before measuring"))
    before = (copy / "front.json").read_text()
    code, _, stderr = _main_captured(_tune_args(copy, num_per_class="3", bench_batch="4"))
    assert code == 2
    assert "other settings" in stderr and "bench_batch" in stderr and "num_per_class" in stderr
    assert (copy / "front.json").read_text() == before  # nothing of the old run is lost


def _replace_list(argv, flag, values):
    """`argv` with the values after `flag` (up to the next flag) replaced by `values`."""
    i = argv.index(flag) + 1
    j = next((k for k in range(i, len(argv)) if argv[k].startswith("--")), len(argv))
    return argv[:i] + values + argv[j:]


def test_tune_rerun_with_a_smaller_grid_keeps_the_front(tuned, monkeypatch, tmp_path):
    """Issue 18: a rerun with fewer specs must not shrink a finished front."""
    out, front, _ = tuned
    copy = _copy_that_must_not_measure(out, tmp_path, monkeypatch, AssertionError(
        "the kept configurations are finished: nothing to measure"))
    code, stdout, stderr = _main_captured(_replace_list(_tune_args(copy), "--specs", ["full"]))
    assert code == 0, stderr
    again = json.loads((copy / "front.json").read_text())
    assert again["rows"] == front["rows"]
    assert "also holds d2+cfgstop4; kept in the front" in stdout


def test_tune_rerun_with_fewer_seeds_is_refused(tuned, monkeypatch, tmp_path):
    out, _, _ = tuned
    copy = _copy_that_must_not_measure(out, tmp_path, monkeypatch, AssertionError(
        "a front over fewer seeds must be refused before measuring"))
    before = (copy / "front.json").read_text()
    code, _, stderr = _main_captured(_replace_list(_tune_args(copy), "--seeds", ["0"]))
    assert code == 2
    assert "seeds [0, 1]" in stderr and "lacks 1" in stderr and "--seeds 0 1" in stderr
    assert (copy / "front.json").read_text() == before


def test_tune_with_two_images_per_seed(tmp_path):
    out = tmp_path / "t"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, _, stderr = _main_captured(_tune_args(out, num_per_class="1"))
    finally:
        torch.set_num_threads(threads)
    sampled = list(out.glob("configs/*/seed*/*.png"))
    assert code == 0 or (code == 2 and not sampled and "--num-per-class" in stderr), stderr


def test_tune_show_grid_writes_nothing(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["tune", "--model", "builtin", "--out", str(out), "--show-grid"]) == 0
    printed = capsys.readouterr().out.split()
    # the builtin model: depth 8, 6 scales, trained subnets 2 and 4
    assert printed == default_grid(8, 6, (4, 2))
    assert not out.exists()
    assert main(["tune", "--model", "builtin", "--out", str(out), "--show-grid",
                 "--specs", "full", "d2+cfgstop4", "--extra", "d4"]) == 0
    assert capsys.readouterr().out.split() == ["full", "d2+cfgstop4"]
    assert main(["tune", "--model", "builtin", "--out", str(out), "--show-grid",
                 "--subnets", "4", "--extra", "d6"]) == 0
    assert capsys.readouterr().out.split() == default_grid(8, 6, (4,)) + ["d6"]
    assert not out.exists()


# ---------------------------------------------------------------------- variant plan --front
def test_plan_front_best_within_kv(tuned, capsys):
    out, front, _ = tuned
    assert main(["plan", "--front", str(out / "front.json"), "--max-kv", "100MiB"]) == 0
    text = capsys.readouterr().out
    best = min(front["rows"], key=lambda r: r["quality"]["fid"]["mean"])
    assert f"best within budget: {best['spec']} |" in text
    assert f"fid {best['quality']['fid']['mean']:.2f}" in text
    assert "next better (over budget): none" in text
    command = next(line for line in text.splitlines() if line.startswith("variant sample"))
    args = shlex.split(command)  # the front's whole sampling settings, ready to run
    assert args[:6] == ["variant", "sample", "--model", "builtin", "--plan", best["spec"]]
    settings = front["meta"]["settings"]
    assert args[args.index("--dtype") + 1] == settings["dtype"]
    assert float(args[args.index("--cfg") + 1]) == settings["cfg"]
    assert int(args[args.index("--top-k") + 1]) == settings["top_k"]
    assert "--seed" not in args
    assert "scaled to --batch 1" in text


def test_plan_front_nothing_fits_names_the_cheapest(tuned, capsys):
    out, front, _ = tuned
    assert main(["plan", "--front", str(out / "front.json"), "--max-kv", "1B"]) == 2
    err = capsys.readouterr().err
    cheapest = min(front["rows"], key=lambda r: r["cost"]["kv_peak_bytes"])
    assert cheapest["spec"] == "d2+cfgstop4"
    kv = fmt_bytes(cheapest["cost"]["kv_peak_bytes"] / 2)  # --batch 1 of a batch-2 front
    assert f"the cheapest, d2+cfgstop4, needs KV {kv} > 1 B" in err
    assert "Traceback" not in err


def test_plan_front_latency_refuses_another_thread_count(tuned, capsys):
    out, front, _ = tuned
    path = str(out / "front.json")
    args = ["plan", "--front", path, "--max-latency", "10s", "--device", "cpu"]
    assert main([*args, "--threads", "99"]) == 2
    err = capsys.readouterr().err
    assert "--allow-other-device" in err and "99" in err and "Traceback" not in err
    assert main([*args, "--threads", "99", "--allow-other-device"]) == 0
    assert "best within budget:" in capsys.readouterr().out
    # the front's own thread count on this device: no flag needed
    assert main([*args, "--threads", str(front["meta"]["threads"])]) == 0
    assert "best within budget:" in capsys.readouterr().out


def test_plan_front_missing_file_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused as the arguments are read
        main(["plan", "--front", str(tmp_path / "nope.json"), "--max-kv", "1GiB"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --front:" in err and "nope.json' does not exist" in err
    assert "Traceback" not in err
