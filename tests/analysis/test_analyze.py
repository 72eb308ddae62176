import json

import pytest

from variant.analysis.analyze import (
    asymmetry_rows,
    default_ranges,
    format_asymmetry,
    format_pareto,
    pareto_table,
    parse_ranges,
    parse_subnet,
    range_plan,
    range_shares,
)
from variant.cli.main import main
from variant.config import VARConfig
from variant.sampling.plan import DepthPlan


def test_parse_ranges():
    assert parse_ranges(["1-3", "4-6", "7-10"], 10) == [(1, 3), (4, 6), (7, 10)]
    assert parse_ranges(["r7-r10", "5", "2:4"], 10) == [(7, 10), (5, 5), (2, 4)]
    for bad in ("0-3", "3-1", "1-11", "a-b", "1-2-3"):
        with pytest.raises(ValueError, match="scale range"):
            parse_ranges([bad], 10)


def test_default_ranges_scale_with_the_schedule():
    assert default_ranges(10) == [(1, 3), (4, 6), (7, 10)]  # the paper, 256 px
    assert default_ranges(14) == [(1, 4), (5, 8), (9, 14)]  # 1024 px schedule
    assert default_ranges(3) == [(1, 1), (2, 2), (3, 3)]
    assert default_ranges(1) == [(1, 1)]


def test_parse_subnet():
    assert parse_subnet("50%", 30) == 15 and parse_subnet("d16", 30) == 16
    assert parse_subnet("8", 30) == 8 and parse_subnet("0.25", 16) == 4
    assert parse_subnet("50%", 4) == 2 and parse_subnet("d1", 1) == 1
    for too_small in ("10%", "d1", "0.2"):  # no silent rounding up: say what to pass instead
        with pytest.raises(ValueError, match="needs at least 2.*such as d2"):
            parse_subnet(too_small, 4)
    with pytest.raises(ValueError, match="exceeds"):
        parse_subnet("d40", 30)
    with pytest.raises(ValueError, match="cannot read the subnet"):
        parse_subnet("half", 30)


def test_range_plan_runs_the_subnet_only_in_its_range():
    plan = range_plan(30, 10, 8, (7, 10))
    full, sub = tuple(range(30)), (0, 4, 8, 12, 16, 20, 24, 29)
    assert plan.layer_sets == (full,) * 6 + (sub,) * 4
    assert plan.layer_sets == DepthPlan.paper(30, 8, 6, 10).layer_sets
    middle = range_plan(30, 10, 15, (4, 6))
    assert [len(s) for s in middle.layer_sets] == [30] * 3 + [15] * 3 + [30] * 4
    assert middle.name == "d15@r4-r6"


def test_flop_shares_by_hand():
    # Two layers of width 8 (FFN 32), vocab 16, Cvae 4, scales of 1, 4, 9 tokens. Per token and
    # layer 768 multiply-adds of linear layers, plus 2 x 8 per key attended; 160 for the word
    # embedding and the head. FLOPs per scale, head included (see tests/models/test_cost.py):
    # r1: 2 x 1568 + 320, r2: 2 x 6784 + 1280, r3: 2 x 17856 + 2880.
    cfg = VARConfig(depth=2, embed_dim=8, num_heads=1, V=16, Cvae=4, patch_nums=(1, 2, 3))
    per_scale = [3456, 14848, 38592]
    ranges = [(1, 1), (2, 3)]
    assert range_shares(per_scale, ranges) == pytest.approx([3456 / 56896, 53440 / 56896])
    rows = asymmetry_rows(cfg, ranges, 1)  # I_1 = layer 0 on the range, both layers elsewhere
    assert [r["plan"] for r in rows] == ["full", "d1@r1", "d1@r2-r3"]
    assert [r["flop_share"] for r in rows[1:]] == pytest.approx([3456 / 56896, 53440 / 56896])
    # r1 on layer 0 only: scale 1 drops one layer (1568); layer 1 then attends to 4 and 4 + 9
    # keys at scales 2 and 3 instead of 5 and 14 (2 x 8 x (4 x 1 + 9 x 1) x 2 = 416 FLOPs less)
    assert rows[1]["flop_saving"] == pytest.approx((1568 + 416) / 56896)
    assert rows[2]["flop_saving"] == pytest.approx((6784 + 17856) / 56896)


def test_flop_shares_d30():
    shares = [r["flop_share"] for r in asymmetry_rows(VARConfig(depth=30), default_ranges(10),
                                                      15)[1:]]
    assert sum(shares) == pytest.approx(1.0)
    assert shares[2] == pytest.approx(0.86, abs=0.015)  # DESIGN §4: scales 7-10 hold ~86%


def test_asymmetry_rows_and_table():
    cfg = VARConfig(depth=30)
    ranges = default_ranges(10)
    profile = {"model": {"depth": 30}, "scales": [
        {"seconds_per_layer": 0.01 * (k + 1), "overhead_seconds": 0.0} for k in range(10)]}
    evals = [{"plan": "full", "fid": 2.0}, {"plan": "d15@r1-r3", "fid": 3.5},
             {"plan": "d15@r4-r6", "fid": 2.6}, {"plan": "d15@r7-r10", "fid": 2.1}]
    rows = asymmetry_rows(cfg, ranges, 15, evals, profile)
    assert [r["plan"] for r in rows] == ["full", "d15@r1-r3", "d15@r4-r6", "d15@r7-r10"]
    assert rows[0]["flop_saving"] == 0 and rows[0]["range"] is None
    assert sum(r["flop_share"] for r in rows[1:]) == pytest.approx(1.0)
    assert rows[3]["latency_share"] == pytest.approx(sum(range(7, 11)) / 55)
    assert rows[3]["flop_saving"] > rows[2]["flop_saving"] > rows[1]["flop_saving"] > 0
    table = format_asymmetry(rows, "fid")
    assert "| d15@r1-r3 | r1-r3 |" in table and "+1.500" in table


def test_pareto_front():
    results = {
        "p=0.1": [{"plan": "full", "fid": 2.0}, {"plan": "d8", "fid": 2.8}],
        "p=1.0": [{"plan": "full", "fid": 2.4}, {"plan": "d8", "fid": 2.3}],
        "progressive": [{"plan": "full", "fid": 2.05}, {"plan": "d8", "fid": 2.25}],
    }
    table = pareto_table(results, "fid")
    assert {t["supernet"]: t["front"]["d8"] for t in table} == {
        "p=0.1": True, "p=1.0": False, "progressive": True}
    acc = {k: [{**r, "class_accuracy": -r["fid"]} for r in v] for k, v in results.items()}
    assert [t["front"]["d8"] for t in pareto_table(acc, "class_accuracy")] == [
        True, False, True]
    assert "★" in format_pareto(table, "fid")
    with pytest.raises(ValueError, match="no 'fid' for the full plan"):
        pareto_table({"x": [{"plan": "d8", "fid": 1.0}]}, "fid")


def test_analyze_cli_asymmetry_and_pareto(tmp_path, capsys):
    out = tmp_path / "asym"
    argv = ["analyze", "asymmetry", "--model", "random:tiny", "--ranges", "1-2", "3",
            "--subnet", "d2", "--num-per-class", "1", "--num-classes", "2", "--metric", "none",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| d2@r1-r2 | r1-r2 |" in text and "| d2@r3 | r3 |" in text
    data = json.loads((out / "asymmetry.json").read_text())
    assert data["ranges"] == [[1, 2], [3, 3]] and data["subnet_depth"] == 2
    shares = [r["flop_share"] for r in data["rows"][1:]]
    assert sum(shares) == pytest.approx(1.0)
    assert sum(r["latency_share"] for r in data["rows"][1:]) == pytest.approx(1.0)
    assert len(list((out / "d2@r3").glob("*.png"))) == 2
    # eval.json of the study doubles as a (metric-less) pareto input: no fid -> clear error
    assert main(["analyze", "pareto", str(out / "eval.json")]) == 2
    assert "no 'fid' for the full plan" in capsys.readouterr().err


def test_analyze_cli_pareto_from_eval_files(tmp_path, capsys):
    paths = []
    for name, full, sub in (("a", 2.0, 2.8), ("b", 2.4, 2.3), ("c", 2.05, 2.25)):
        rows = [{"plan": "full", "fid": full}, {"plan": "d8", "fid": sub}]
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps({"rows": rows}))
        paths.append(str(tmp_path / name))
    argv = ["analyze", "pareto", *paths, "--labels", "p=0.1", "p=1.0", "progressive",
            "--json", str(tmp_path / "pareto.json"), "--plot", str(tmp_path / "pareto.png")]
    assert main(argv) == 0
    assert "| progressive | 2.050 | 2.250 ★ |" in capsys.readouterr().out
    table = json.loads((tmp_path / "pareto.json").read_text())["table"]
    assert [t["front"]["d8"] for t in table] == [True, False, True]
    assert main(["analyze", "pareto", *paths, "--labels", "x"]) == 2
