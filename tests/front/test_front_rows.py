"""A front's rows: marking the front, choosing from it within budgets (the one chooser over its
measured options), the device check, reading a front file and its table; on made-up rows."""

import json

import pytest
import torch

from variant.efficiency.bench import device_name
from variant.efficiency.choice import Budget, choose
from variant.front import (
    FRONT_FORMAT,
    check_front_device,
    format_front,
    front_options,
    load_front,
)
from variant.front.tune import family, mark_fronts

MIB = 2**20


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
    with pytest.raises(ValueError, match="not found; give the front.json `variant tune` wrote"):
        load_front(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
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
