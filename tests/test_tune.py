"""`variant tune` (variant.front.tune, cli/tune.py) and `variant plan --front` (cli/plan.py).

The pure parts (grid, families, intervals, fronts, choosing from a front) run on made-up rows;
one small end-to-end run of the built-in model (two configurations, two seeds, four images per
seed, one timed run each) is shared by the CLI tests through a module fixture.
"""

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
from variant.efficiency.choice import Budget, choose
from variant.front import (
    FRONT_FORMAT,
    check_front_device,
    format_front,
    front_options,
    load_front,
)
from variant.front.tune import TuneSettings, default_grid, family, mark_fronts
from variant.sampling.configuration import folder_name
from variant.units import fmt_bytes

MIB = 2**20


# ---------------------------------------------------------------------- grid and families
def test_default_grid_depth8_six_scales():
    grid = default_grid(8, 6, (4, 2))
    assert grid == [
        # depth plans
        "full", "d4", "d2",
        # each lever alone on the full network: cfg-stop and pruning on the last two scales
        # (0-based scale 4 of 6), guide plans from the shallowest subnet, KV retention 1,2
        "full+cfgstop4", "full+guide=d2", "full+autoguide=d2", "full+prune0.5@4", "full+kv1,2",
        # combinations
        "d4+cfgstop4", "d4+prune0.5@4", "d4+cfgstop4+prune0.5@4",
        "d2+cfgstop4", "d2+prune0.5@4", "d2+cfgstop4+prune0.5@4",
        "d4+autoguide=d2",
    ]
    # the order of --subnets, duplicates and out-of-range depths do not matter
    assert default_grid(8, 6, [2, 4, 4, 1, 8, 9]) == grid
    assert len(set(grid)) == len(grid)


def test_default_grid_small_cases():
    # four scales: no KV retention; one subnet: no autoguided subnet (it would guide itself)
    grid = default_grid(4, 4, [2])
    assert "full+kv1,2" not in grid
    assert grid[:3] == ["full", "d2", "full+cfgstop2"]
    assert not any(s.startswith("d2+autoguide") for s in grid)


@pytest.mark.parametrize("subnets", [(), (1,), (8,), (9, 12)])
def test_default_grid_without_a_subnet_names_the_flag(subnets):
    with pytest.raises(ValueError, match="--subnets") as err:
        default_grid(8, 6, subnets)
    assert "2..7" in str(err.value)


@pytest.mark.parametrize("spec, expected", [
    ("full", "depth"),
    ("d4", "depth"),
    ("full+cfgstop4", "cfg-stop"),
    ("full+guide=d2", "guide plan"),
    ("full+autoguide=d2", "autoguidance"),
    ("full+prune0.5@4", "pruning"),
    ("full+kv1,2", "KV retention"),
    ("d4+cfgstop4", "combination"),
    ("full+cfgstop4+prune0.5@4", "combination"),
    ("d4+autoguide=d2", "combination"),
])
def test_family(spec, expected):
    assert family(spec) == expected
    assert expected in tune.families()


def test_every_grid_spec_has_a_family():
    families = {family(s) for s in default_grid(8, 6, (4, 2))}
    assert families == set(tune.families())


def test_slug():
    assert folder_name("d2+cfgstop4+prune0.5@4") == "d2+cfgstop4+prune0.5@4"
    assert folder_name("full+kv1,2") == "full+kv1,2"
    odd = folder_name('{"layers": [[0, 1]]}')
    assert odd.startswith("custom-") and len(odd) == len("custom-") + 10
    assert odd == folder_name('{"layers": [[0, 1]]}') != folder_name('{"layers": [[0, 2]]}')


def test_tune_settings_validation():
    with pytest.raises(ValueError, match="distinct --seeds"):
        TuneSettings(seeds=(0, 0))
    with pytest.raises(ValueError, match="distinct --seeds"):
        TuneSettings(seeds=())
    with pytest.raises(ValueError, match="--warmup >= 0"):
        TuneSettings(warmup=-1)
    with pytest.raises(ValueError, match="--repeats"):
        TuneSettings(repeats=0)


# ---------------------------------------------------------------------- fronts
def _row(spec, fid, total_s, kv, memory, low=None, high=None):
    return {"spec": spec, "family": family(spec), "plan": spec.split("+")[0],
            "quality": {"fid": {"mean": fid, "low": low, "high": high, "n": 3,
                                "per_seed": [fid] * 3}},
            "cost": {"total_s": total_s, "total_q1_s": total_s, "total_q3_s": total_s,
                     "kv_peak_bytes": kv, "peak_memory_bytes": memory,
                     "gflops_per_image": 1.0}}


def test_mark_fronts_dominance():
    rows = [_row("full", 10.0, 4.0, 800, 3000),
            _row("d4", 12.0, 2.0, 400, 2000),
            _row("d2", 15.0, 1.0, 200, 1500),
            # costs more latency than d4 with worse quality: off the latency front;
            # least KV of the better ones: on the KV front; same memory as d4, worse: off
            _row("full+cfgstop4", 13.0, 3.0, 300, 2000)]
    mark_fronts(rows)
    on = {r["spec"]: r["on_front"] for r in rows}
    assert on["full"] == {"latency": True, "kv": True, "memory": True}
    assert on["d4"] == {"latency": True, "kv": True, "memory": True}
    assert on["d2"] == {"latency": True, "kv": True, "memory": True}
    assert on["full+cfgstop4"] == {"latency": False, "kv": True, "memory": False}


def test_mark_fronts_ties_and_missing():
    rows = [_row("full", 10.0, 2.0, 400, 1000),
            _row("d4", 10.0, 2.0, 400, 1000),  # identical cost and quality: both on
            _row("d2", 10.0, 2.0, 500, None),  # same quality, more KV: off the KV front
            _row("full+cfgstop4", None, 1.0, 100, 100)]  # no quality: None, dominates nothing
    mark_fronts(rows)
    on = {r["spec"]: r["on_front"] for r in rows}
    assert on["full"] == on["d4"] == {"latency": True, "kv": True, "memory": True}
    assert on["d2"] == {"latency": True, "kv": False, "memory": None}
    assert on["full+cfgstop4"] == {"latency": None, "kv": None, "memory": None}


def test_mark_fronts_higher_is_better():
    rows = [_row("full", 0.9, 2.0, 400, 1000), _row("d2", 0.5, 3.0, 400, 1000)]
    mark_fronts(rows, "fid", lower_is_better=False)
    assert rows[0]["on_front"]["latency"] is True and rows[1]["on_front"]["latency"] is False
    mark_fronts(rows, "fid", lower_is_better=True)
    assert rows[1]["on_front"]["latency"] is True  # cheaper no more, but better now


# ---------------------------------------------------------------------- choosing from a front
def _front(rows=None, threads=4, device="x86_64"):
    rows = rows if rows is not None else [
        _row("full", 10.0, 4.0, 800 * MIB, 3 * 2**30, low=9.0, high=11.0),
        _row("d4", 12.0, 2.0, 400 * MIB, 2 * 2**30),
        _row("d2", 15.0, 1.0, 200 * MIB, 1.5 * 2**30),
        _row("d2+cfgstop4", 20.0, 0.4, 100 * MIB, 2**30),
        _row("full+cfgstop4", 13.0, 3.0, 300 * MIB, 2.5 * 2**30),
    ]
    mark_fronts(rows)
    return {"format": FRONT_FORMAT, "version": 1, "rows": rows,
            "meta": {"metric_key": "fid", "bench_batch": 8, "device_name": device,
                     "threads": threads, "model": "builtin", "metric": "metric-net",
                     "seeds": [0, 1, 2], "dtype": "fp32", "device": "cpu",
                     "num_per_class": 20, "num_classes": 10, "depth": 8, "num_scales": 6,
                     "settings": {"cfg": 1.5, "top_k": 900, "top_p": 0.96, "dtype": "fp32"}}}


def choose_from_front(front, batch=None, **limits):
    """The one chooser over the front's measured options."""
    return choose(Budget(**limits), front_options(front, batch))


def test_choose_best_within_latency_and_neighbours():
    choice = choose_from_front(_front(), max_latency=2.5)
    assert choice.chosen.spec == "d4"
    assert choice.cheaper.spec == "d2"  # best of those faster than d4
    assert choice.better.spec == "full"  # the only one with a better fid than 12
    assert choice.axis == "latency"
    # the budget exactly at a configuration's cost admits it
    assert choose_from_front(_front(), max_latency=4.0).chosen.spec == "full"
    top = choose_from_front(_front(), max_latency=100)
    assert top.chosen.spec == "full" and top.better is None
    assert top.cheaper.spec == "d4"
    bottom = choose_from_front(_front(), max_latency=0.4)
    assert bottom.chosen.spec == "d2+cfgstop4" and bottom.cheaper is None
    assert bottom.better.spec == "d2"


def test_choose_scales_latency_and_kv_with_the_batch():
    # --batch 1 of a front timed at batch 8: costs are 1/8 (full: 0.5 s, 100 MiB)
    assert choose_from_front(_front(), max_latency=1.5).chosen.spec == "d2"
    assert choose_from_front(_front(), max_latency=1.5, batch=1).chosen.spec == "full"
    assert choose_from_front(_front(), max_latency=0.3, batch=1).chosen.spec == "d4"
    assert choose_from_front(_front(), max_kv=100 * MIB, batch=1).chosen.spec == "full"
    assert choose_from_front(_front(), max_kv=100 * MIB).chosen.spec == "d2+cfgstop4"
    # batch 16: twice the front's costs
    assert choose_from_front(_front(), max_latency=4.0, batch=16).chosen.spec == "d4"
    # memory is compared as measured, whatever the batch
    assert (choose_from_front(_front(), max_memory=2 * 2**30, batch=1).chosen.spec
            == choose_from_front(_front(), max_memory=2 * 2**30, batch=64).chosen.spec
            == "d4")


def test_choose_several_budgets():
    front = _front()
    # latency alone admits d4; KV 350 MiB rules it out: full+cfgstop4 is the best left
    choice = choose_from_front(front, max_latency=3.5, max_kv=350 * MIB)
    assert choice.chosen.spec == "full+cfgstop4"
    assert choice.axis == "latency"
    both = choose_from_front(front, max_latency=3.5, max_kv=350 * MIB, max_memory=2 * 2**30)
    assert both.chosen.spec == "d2"


def test_choose_nothing_meets_names_the_cheapest():
    with pytest.raises(ValueError, match="nothing fits the budget") as err:
        choose_from_front(_front(), max_latency=0.1)
    assert "the cheapest, d2+cfgstop4, needs latency 0.40 s > 0.10 s" in str(err.value)
    with pytest.raises(ValueError, match=r"cheapest, d2\+cfgstop4, needs KV 12\.5 MiB > 10\.0"):
        choose_from_front(_front(), max_kv=10 * MIB, batch=1)  # 100 MiB / 8


def test_choose_needs_a_budget_and_measured_rows():
    with pytest.raises(ValueError, match="at least one limit"):
        choose_from_front(_front())
    rows = [_row("full", 10.0, None, 400, 1000), _row("d2", None, 1.0, 100, 1000)]
    with pytest.raises(ValueError, match="none of the 1 configurations has a latency cost"):
        choose_from_front(_front(rows), max_latency=5)
    # rows without the budget's cost or a quality are not candidates
    rows = [_row("full", 10.0, None, 400, 1000), _row("d4", 11.0, 2.0, 400, 1000),
            _row("d2", None, 1.0, 100, 1000)]
    assert choose_from_front(_front(rows), max_latency=5).chosen.spec == "d4"


def test_check_front_device():
    here = device_name(torch.device("cpu"))
    front = _front(threads=4, device=here)
    check_front_device(front, "cpu", 4, allow_other=False)  # same device and threads: fine
    with pytest.raises(ValueError, match="--allow-other-device") as err:
        check_front_device(front, "cpu", 2, allow_other=False)
    assert "4 threads" in str(err.value) and "with 2" in str(err.value)
    check_front_device(front, "cpu", 2, allow_other=True)
    other = _front(threads=4, device="Some Other CPU")
    with pytest.raises(ValueError, match="Some Other CPU"):
        check_front_device(other, "cpu", 4, allow_other=False)
    check_front_device(other, "cpu", 4, allow_other=True)


def test_load_front_errors(tmp_path):
    with pytest.raises(ValueError, match="not found; make one with `variant tune`"):
        load_front(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        load_front(bad)
    for data in ({"format": "variant-bench", "rows": [{}]}, [1, 2],
                 {"format": FRONT_FORMAT, "rows": []}):
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps(data))
        with pytest.raises(ValueError, match="is not a `variant tune` front") as err:
            load_front(wrong)
        assert "front.json" in str(err.value)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_front()))
    assert load_front(good)["rows"][0]["spec"] == "full"


@pytest.mark.parametrize("damage, words", [
    (lambda f: f["meta"].pop("settings"), "'meta' lacks settings"),
    (lambda f: f["meta"].pop("model"), "'meta' lacks model"),
    (lambda f: f["meta"]["settings"].update(cfg_scale=2), "sampling settings cannot be read"),
    (lambda f: f["rows"][1]["cost"].pop("kv_peak_bytes"), "row 1 (d4)'s cost lacks kv_peak_bytes"),
    (lambda f: f["rows"][0]["quality"].pop("fid"), "row 0 (full) has no fid with mean, low"),
    (lambda f: f["rows"][2].pop("spec"), "row 2 (no spec) has no spec"),
    (lambda f: f["rows"][3].pop("on_front"), "row 3 (d2+cfgstop4) has no family or front"),
])
def test_an_incomplete_front_names_what_it_lacks(tmp_path, damage, words):
    front = _front()
    damage(front)
    path = tmp_path / "front.json"
    path.write_text(json.dumps(front))
    with pytest.raises(ValueError, match="is not a complete `variant tune` front") as err:
        load_front(path)
    assert words in str(err.value) and "rerun it (it resumes)" in str(err.value)


def test_format_front_sorted_by_latency():
    table = format_front(_front())
    lines = table.splitlines()
    specs = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert specs == ["d2+cfgstop4", "d2", "d4", "full+cfgstop4", "full"]
    full = lines[-1]
    assert "10.00 (9.00–11.00)" in full and "800.00 MiB" in full and "yes / yes" in full
    assert "| full+cfgstop4 | combination" not in table  # full+lever is its lever's family
    assert "| full+cfgstop4 | cfg-stop | 13.00 | 3.000 |" in table
    assert "| — / yes |" in table  # full+cfgstop4: off the latency front, on the KV front


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
        assert fid["low"] == pytest.approx(fid["mean"] - half)
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
    assert main(["plan", "--front", str(tmp_path / "nope.json"), "--max-kv", "1GiB"]) == 2
    err = capsys.readouterr().err
    assert "not found; make one with `variant tune`" in err and "Traceback" not in err
