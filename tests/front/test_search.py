"""`variant tune --search FAMILY --max-flops X` (front/search.py): the FLOP budget's syntax, the
survivor rule on hand-made points, and one small search of the built-in model's monotone family
(subnet depth 2: five subnet plans, four within 60% of the full network's FLOPs; stage 1 four
images per plan, stage 2 two seeds of four images and one timed run) shared by the tests through
a module fixture: its front is a normal front, the budget holds, a rerun resumes only what is
missing and gives the same front, bad inputs are refused before any work."""

import contextlib
import io
import json
import shutil

import pytest
import torch

import variant.front.tune as tune
from variant.cli.main import main
from variant.front import load_front
from variant.front.search import Selection, read_flop_budget, select
from variant.front.tune import Tuner
from variant.sampling.configuration import folder_name

SEARCH = ["tune", "--model", "builtin", "--search", "monotone", "--subnets", "2",
          "--max-flops", "60%", "--bins", "1", "--search-per-class", "2", "--seeds", "0", "1",
          "--num-per-class", "2", "--num-classes", "2", "--repeats", "1", "--warmup", "0",
          "--bench-batch", "2", "--reference-count", "100", "--no-progress"]


def _run(argv):
    """`main(argv)` on one thread (the timed runs' thread count is part of what a resumed run
    must match), output captured: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_info:  # refused as the arguments are read
                code = exit_info.code
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "s"
    code, stdout, stderr = _run([*SEARCH, "--out", str(out)])
    assert code == 0, stderr
    return out, json.loads((out / "front.json").read_text()), json.loads(
        (out / "search.json").read_text())


# ---------------------------------------------------------------------- the budget's syntax
@pytest.mark.parametrize("text, value, relative", [
    ("0.6", 0.6, True), ("60%", 0.6, True), (" 100 % ", 1.0, True), ("1", 1.0, True),
    ("0.6G", 0.6e9, False), ("600M", 6e8, False), ("6e8flops", 6e8, False),
    ("0.5 GFLOPs", 0.5e9, False), ("2k", 2e3, False)])
def test_flop_budget_reads_fractions_and_flops(text, value, relative):
    budget = read_flop_budget(text)
    assert budget.value == pytest.approx(value) and budget.relative is relative
    assert budget.flops(2e9) == pytest.approx(value * 2e9 if relative else value)


@pytest.mark.parametrize("text, words", [
    ("2", "e.g. 2G"), ("150%", "exceeds the full network"), ("0", "above zero"),
    ("0G", "above zero"), ("5%G", "cannot read"), ("fast", "cannot read"), ("", "cannot read"),
    ("1e400", "too large"), ("nan", "cannot read"), ("-0.5", "cannot read")])
def test_flop_budget_refuses_what_it_cannot_mean(text, words):
    with pytest.raises(ValueError, match="FLOP budget") as err:
        read_flop_budget(text)
    assert words in str(err.value)


# ---------------------------------------------------------------------- the survivor rule
def test_select_keeps_the_front_and_the_best_of_each_bin():
    # (spec, GFLOPs, FID): f is dominated by b, d by c; e has no quality. Bins of 2: 0.5-0.75
    # (c, d) and 0.75-1 (b, f, a).
    points = [("a", 1.0, 10.0), ("b", 0.9, 12.0), ("f", 0.95, 13.0), ("c", 0.5, 20.0),
              ("d", 0.6, 21.0), ("e", 0.4, None)]
    chosen = select(points, keep=1, bins=2)
    assert chosen.survivors == ("a", "c", "b")  # the bins' best (best first), then the front
    assert chosen.reasons == {
        "a": ["on the stage-1 front", "best 1 of 3 in FLOP bin 2/2 (0.75-1 GFLOPs)"],
        "b": ["on the stage-1 front"],
        "c": ["on the stage-1 front", "best 1 of 2 in FLOP bin 1/2 (0.5-0.75 GFLOPs)"]}
    kept2 = select(points, keep=2, bins=2)
    assert kept2.survivors == ("a", "b", "c", "d")  # d: second of bin 1; f third of bin 2
    assert kept2.reasons["d"] == ["best 2 of 2 in FLOP bin 1/2 (0.5-0.75 GFLOPs)"]
    assert kept2.reasons["b"] == ["on the stage-1 front",
                                  "best 2 of 3 in FLOP bin 2/2 (0.75-1 GFLOPs)"]
    # the limit cuts the front plans before the bins' picks, the worst first
    assert select(points, keep=1, bins=2, limit=2).survivors == ("a", "c")
    assert select(points, keep=2, bins=2, limit=3).survivors == ("a", "b", "c")
    # higher-is-better metrics flip the comparison: a plan with a larger score dominates
    flipped = select([("p", 0.5, 2.0), ("q", 0.6, 1.0)], 1, 2, lower_is_better=False)
    assert flipped.survivors == ("p", "q") and flipped.reasons["q"] == [
        "best 1 of 1 in FLOP bin 2/2 (0.55-0.6 GFLOPs)"]


def test_select_front_ignores_bins_and_handles_ties():
    points = [("x", 0.5, 3.0), ("y", 0.5, 3.0), ("z", 0.7, 3.0)]
    chosen = select(points, keep=1, bins=1)
    assert chosen.survivors == ("x", "y")  # equal points do not dominate each other; z is
    assert chosen.reasons["x"] == ["on the stage-1 front", "best 1 of 3 in FLOP bin 1/1 "
                                   "(0.5-0.7 GFLOPs)"]
    assert select([("only", 0.3, 1.0)], keep=1, bins=4).survivors == ("only",)
    assert select([], keep=1, bins=4) == Selection({}, ())


# ---------------------------------------------------------------------- the search end to end
def test_search_writes_a_normal_front_within_the_budget(searched):
    out, front, record = searched
    assert load_front(out / "front.json")["rows"] == front["rows"]
    settings = record["settings"]
    assert (settings["family"], settings["max_flops"], settings["subnets"]) == (
        "monotone", "60%", [2])
    plans = {p["spec"]: p for p in record["plans"]}
    # the family: the full plan and its five subnet plans of depth 2, costs predicted
    assert list(plans) == ["full", "d2@bridge5", "d2", "d2@bridge3", "d2@bridge2", "d2@bridge1"]
    budget = settings["budget_gflops_per_image"]
    assert budget == pytest.approx(0.6 * record["full"]["gflops_per_image"])
    stage1 = {s for s, p in plans.items() if p["within_budget"]}
    assert stage1 == {s for s, p in plans.items() if p["gflops_per_image"] <= budget}
    assert stage1 == {"d2", "d2@bridge3", "d2@bridge2", "d2@bridge1"}
    assert all((p["stage1_quality"] is None) == (s not in stage1) for s, p in plans.items())
    survivors = {s for s, p in plans.items() if p["survived"]}
    assert survivors and survivors <= stage1
    roles = {r["spec"]: r["role"] for r in record["stage2"]}
    assert roles == {"full": "reference", **{s: "survivor" for s in survivors}}
    assert [r["spec"] for r in front["rows"]] == [r["spec"] for r in record["stage2"]]
    for row in front["rows"]:  # the front's FLOPs and KV are the predicted ones
        predicted = plans[row["spec"]]
        assert row["cost"]["gflops_per_image"] == pytest.approx(predicted["gflops_per_image"])
        assert row["cost"]["kv_peak_bytes"] == predicted["kv_peak_bytes"]
        assert row["spec"] == "full" or row["cost"]["gflops_per_image"] <= budget
        assert row["quality"]["fid"]["n"] == 2  # stage 2: the tune seeds, not stage 1's one


def test_search_survivors_follow_the_rule(searched):
    """One FLOP bin, no cut: the plans left out are exactly the dominated ones that are not
    the best of all."""
    _, _, record = searched
    measured = [(p["spec"], p["gflops_per_image"], p["stage1_quality"]["fid"])
                for p in record["plans"] if p["within_budget"]]
    best = min(measured, key=lambda m: (m[2], m[1]))
    for spec, g, q in measured:
        dominated = any(g2 <= g and q2 <= q and (g2 < g or q2 < q) for _, g2, q2 in measured)
        plan = next(p for p in record["plans"] if p["spec"] == spec)
        assert plan["survived"] == (spec == best[0] or not dominated), plan
        assert plan["survived"] or plan["reasons"] == ["dominated, not the best of its FLOP bin"]


def test_plan_front_picks_from_a_searched_front(searched, capsys):
    out, front, _ = searched
    assert main(["plan", "--front", str(out / "front.json"), "--max-kv", "100MiB"]) == 0
    best = min(front["rows"], key=lambda r: r["quality"]["fid"]["mean"])
    assert f"best within budget: {best['spec']} |" in capsys.readouterr().out


def _measured(monkeypatch):
    """The folders sampled from now on; timing refused (every cost part is finished)."""
    sampled = []
    sample = tune.sample_to_folder

    def record(var, vae, plan, folder, *args, **kwargs):
        sampled.append(folder)
        return sample(var, vae, plan, folder, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("resuming must not time again")

    monkeypatch.setattr(tune, "sample_to_folder", record)
    monkeypatch.setattr(tune.subprocess, "run", refuse)
    return sampled


def test_search_resumes_only_what_is_missing(searched, monkeypatch, tmp_path):
    out, front, record = searched
    copy = tmp_path / "s"
    shutil.copytree(out, copy)
    stage1_spec = next(p["spec"] for p in record["plans"] if p["within_budget"])
    survivor = next(r["spec"] for r in record["stage2"] if r["role"] == "survivor")
    part1 = copy / "search" / "configs" / folder_name(stage1_spec)
    part2 = copy / "configs" / folder_name(survivor)
    for gone in (part1 / "quality_seed100.json", part2 / "quality_seed1.json",
                 copy / "front.json", copy / "search.json"):
        gone.unlink()
    shutil.rmtree(part1 / "seed100")
    shutil.rmtree(part2 / "seed1")
    sampled = _measured(monkeypatch)
    code, _, stderr = _run([*SEARCH, "--out", str(copy)])
    assert code == 0, stderr
    assert sampled == [part1 / "seed100", part2 / "seed1"]
    again = json.loads((copy / "front.json").read_text())
    assert again["rows"] == front["rows"]  # sampling and metric are deterministic
    assert json.loads((copy / "search.json").read_text()) == record


def test_search_stage1_is_deterministic_and_interruptible(searched, monkeypatch, tmp_path):
    """A fresh search stopped before stage 2 records the same stage 1 and selection."""
    _, _, record = searched

    def stop(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tuner, "run", stop)
    code, _, stderr = _run([*SEARCH, "--out", str(tmp_path / "s")])
    assert code == 130 and "interrupted" in stderr
    assert json.loads((tmp_path / "s" / "search.json").read_text()) == record
    assert not (tmp_path / "s" / "front.json").exists()


def test_search_with_other_settings_is_refused(searched, tmp_path):
    out, _, _ = searched
    copy = tmp_path / "s"
    shutil.copytree(out, copy)
    before = (copy / "search.json").read_text()
    code, _, stderr = _run([*SEARCH, "--out", str(copy), "--keep", "2"])
    assert code == 2 and "other settings" in stderr and "keep: 1 there, 2 now" in stderr
    assert "delete its search.json" in stderr and "Traceback" not in stderr
    assert (copy / "search.json").read_text() == before


@pytest.mark.parametrize("extra, words", [
    (["--search", "fastest"], "argument --search: cannot read the plan family 'fastest'"),
    (["--search", "zone:5-9"], "scale range 'r5-r9' must lie within 1..6"),
    (["--search", "monotone", "--max-flops", "0.2"],
     "below the cheapest plan of the monotone family on this model: d2@bridge1 at 0.268 "
     "GFLOPs per image (28.3% of the full network); raise --max-flops to at least 0.283 "
     "(or 0.268G)"),
    (["--search", "paper", "--max-flops", "1.5"], "for FLOPs per image add a unit, e.g. 1.5G"),
    (["--search", "paper", "--specs", "d99"], "the model has 8 layers), got 99"),
    (["--search", "paper", "--search-per-class", "1", "--num-classes", "2"],
     "at least 4 images"),
    (["--max-flops", "0.5"], "--max-flops apply to the plan search: add --search FAMILY"),
])
def test_search_bad_input_is_refused_before_any_work(extra, words, tmp_path):
    out = tmp_path / "s"
    code, _, stderr = _run(["tune", "--model", "builtin", "--subnets", "4", "2", "--out",
                            str(out), *extra])
    assert code == 2 and words in stderr and "Traceback" not in stderr, stderr
    assert not out.exists()


def test_search_show_grid_lists_the_family_with_costs(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["tune", "--model", "builtin", "--out", str(out), "--search", "paper",
                 "--max-flops", "0.5G", "--specs", "d4+cfgstop4", "--show-grid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("paper family, budget 0.5G = 0.5 GFLOPs per image")
    assert [line.split()[0] for line in lines[1:4]] == ["full", "d4", "d2"]
    assert [line.split()[-1] for line in lines[1:4]] == ["budget", "budget", "1"]
    assert lines[-1] == "stage 2 measures full, d4+cfgstop4 and the stage-1 survivors."
    assert not out.exists()


def test_search_refuses_a_folder_with_a_plain_tune_front(searched, tmp_path):
    out, front, _ = searched
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "front.json").write_text(json.dumps(front))
    code, _, stderr = _run([*SEARCH, "--out", str(tmp_path / "t")])
    assert code == 2 and "not a search's" in stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["front.json"]
