"""The studio's engine on the built-in model, without a web framework."""

import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from variant.cli.main import main as variant_main
from variant.efficiency.bench import PROFILE_FORMAT
from variant.models.cost import CostModel
from variant.sampling.settings import SamplingConfig
from variant.studio import Request, Studio
from variant.studio import budgets as budgets_module
from variant.studio.report import commands_text, write_downloads
from variant.studio.request import describe_error, request_from_form
from variant.units import parse_size


@pytest.fixture(scope="module")
def full_vs_d2(studio):
    progress = []
    comparison = studio.compare(Request(classes=("disc", 2), num_images=3,
                                        sampling=SamplingConfig(seed=5),
                                        configurations=("full", "", "d2")),
                                progress=lambda f, message: progress.append((f, message)))
    return comparison, progress


def test_same_labels_and_seed_under_each_configuration(full_vs_d2, studio):
    comparison, _ = full_vs_d2
    assert comparison.labels == [0, 2, 0]
    full, d2 = comparison.outcomes
    assert (full.plan.name, d2.plan.name) == ("full", "d2")
    assert full.grid_HW3.shape == d2.grid_HW3.shape == (2 + 2 * 66, 2 + 2 * 66, 3)
    assert comparison.measured_full and full.speedup == 1.0 and full.kv_saving == 0.0


def test_costs_are_measured_and_counted(full_vs_d2, studio):
    comparison, _ = full_vs_d2
    full, d2 = comparison.outcomes
    cost = CostModel(studio.var.config, "fp32", rows=2 * 3)  # cfg doubles the 3 images
    for o in (full, d2):
        assert o.kv_peak_bytes == cost.kv_peak_bytes(o.plan)  # the lean cache meets its bound
        assert o.flops == cost.flops(o.plan, include_head=True)
        assert len(o.runs) == 1 and o.median("total") >= o.median("transformer") > 0
    assert d2.kv_saving == pytest.approx(1 - d2.kv_peak_bytes / full.kv_peak_bytes)
    assert d2.speedup == pytest.approx(full.median("total") / d2.median("total"))
    assert d2.flop_ratio > 1


def test_progress_reports_every_scale_and_ends_at_one(full_vs_d2, studio):
    _, progress = full_vs_d2
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(progress) == 2 * (studio.var.num_scales + 1) + 1
    assert progress[0][1] == "full (1/2): scale 1/6" and progress[-2][1] == "d2 (2/2): decoding"


def test_command_lines_write_the_same_grids(full_vs_d2, tmp_path, monkeypatch):
    comparison, _ = full_vs_d2
    paths = write_downloads(_info(), comparison, tmp_path / "dl")
    assert [p.name for p in paths] == ["1-full.png", "2-d2.png", "reproduce.sh", "costs.json"]
    commands = [c for c in commands_text(_info(), comparison).splitlines()
                if c.startswith("variant ")]
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    for command, png in zip(commands, paths):
        assert variant_main(shlex.split(command)[1:]) == 0
        assert np.array_equal(np.asarray(Image.open(tmp_path / png.name)),
                              np.asarray(Image.open(png)))


def _info():
    from variant.studio import ModelInfo

    return ModelInfo(source="builtin")


def test_timed_runs_take_turns_and_keep_the_images(studio, full_vs_d2):
    again = studio.compare(Request(classes=(0, 2), num_images=3, sampling=SamplingConfig(seed=5),
                                   repeats=2,
                                   configurations=("full", "d2")))
    assert [len(o.runs) for o in again.outcomes] == [2, 2]
    for o, first in zip(again.outcomes, full_vs_d2[0].outcomes):
        assert np.array_equal(o.grid_HW3, first.grid_HW3)


def test_a_kv_budget_picks_a_plan_that_fits(studio):
    comparison = studio.compare(Request(num_images=2, configurations=("KV under 1.5 MiB",)))
    (o,) = comparison.outcomes
    assert o.entry.is_budget and not o.is_full
    assert o.kv_peak_bytes <= parse_size("1.5MiB")
    assert o.how.startswith(f"KV ≤ 1.50 MiB → {o.plan.name} (predicted")
    assert not comparison.measured_full and o.speedup is None


def _flat_profile(var, vae, bench):
    """A latency profile as `profile_scales` writes it: 10 ms per layer at every scale."""
    return {"format": PROFILE_FORMAT, "version": 1, "device": "cpu", "rows": bench.rows,
            "model": {"depth": var.depth, "width": var.C, "patch_nums": list(var.patch_nums)},
            "settings": bench.to_dict(), "decoder_seconds": 0.0,
            "scales": [{"seconds_per_layer": 0.01, "overhead_seconds": 0.0, "tokens": p * p}
                       for p in var.patch_nums]}


def test_a_latency_budget_measures_one_profile_per_workload(studio, monkeypatch):
    calls = []
    monkeypatch.setattr(budgets_module, "profile_scales",
                        lambda *a, **k: calls.append(a[2].batch) or _flat_profile(*a))
    fresh = Studio(studio.var, studio.vae, studio.info, max_images=8)
    # full: 6 scales x 8 layers x 10 ms = 480 ms; the built-in model was trained with subnets
    # d4 and d2 (bridge 4 of 6 scales), which its metadata records: d4 takes 400 ms
    for _ in range(2):
        comparison = fresh.compare(Request(num_images=1, configurations=("best under 450 ms",)))
        o = comparison.outcomes[0]
        assert o.plan.name == "d4"
        assert o.how.startswith("latency ≤ 450 ms → d4 (predicted latency 400 ms, KV ")
    with pytest.raises(ValueError, match=r"nothing fits the budget: even the cheapest, "
                                         r"d2@bridge0, needs latency 0\.12 s "
                                         r"> 0\.10 s; raise the budget or lower the batch"):
        fresh.compare(Request(num_images=1, configurations=("best under 100 ms",)))
    assert calls == [1]  # measured once for this workload, then reused
    fresh.compare(Request(num_images=2, configurations=("best under 1 min", "full")))
    assert calls == [1, 2]


def test_a_request_beyond_the_memory_budget_is_refused(studio):
    small = Studio(studio.var, studio.vae, studio.info, max_memory=parse_size("1MB"))
    with pytest.raises(ValueError, match=r"over the studio's memory budget of 977 KiB "
                                         r"\(--max-memory\); use fewer images"):
        small.compare(Request(num_images=1, configurations=("d2",)))


@pytest.mark.parametrize("changes, words", [
    ({"num_images": 0}, r"number of images must be 1\.\.8, got 0"),
    ({"num_images": 9}, r"number of images must be 1\.\.8, got 9 \(the studio's --max-images"),
    ({"configurations": ("", " ")}, "choose at least one configuration"),
    ({"configurations": ("full", "d4", "d2", "d3", "d1")}, "at most 4 configurations, got 5"),
    ({"classes": ("unicorn",)}, r"unknown class 'unicorn'.*\(0\.\.9\)"),
    ({"top_p": 2.0}, "0 <= top_p <= 1"),
    ({"dtype": "fp8"}, "unknown compute dtype 'fp8'"),
    ({"repeats": 9}, r"timed runs must be 1\.\.5"),
])
def test_bad_requests_name_the_problem(studio, changes, words):
    with pytest.raises(ValueError, match=words):  # settings are checked as the request is made
        sampling = {k: changes.pop(k) for k in ("top_p", "dtype") if k in changes}
        changes["sampling"] = SamplingConfig(seed=0, **sampling)
        studio.compare(Request(**{"configurations": ("full",), **changes}))


def test_form_values_become_a_request():
    r = request_from_form([0, "ring"], 4.0, "3", 1.5, 900.0, 0.96, "bf16", 2, "full", "d2", None,
                          "")
    assert (r.classes, r.num_images, r.sampling.seed, r.sampling.top_k, r.repeats) == (
        (0, "ring"), 4, 3, 900, 2)
    assert r.configurations == ("full", "d2", "", "")
    with pytest.raises(ValueError, match="seed must be a number, got 'abc'"):
        request_from_form([], 4, "abc", 1.5, 900, 0.96, "fp32", 1)
    with pytest.raises(ValueError, match="number of images must be a whole number, got 2.5"):
        request_from_form([], 2.5, 0, 1.5, 900, 0.96, "fp32", 1)
    with pytest.raises(ValueError, match="cfg must be a number, got None"):
        request_from_form([], 2, 0, None, 900, 0.96, "fp32", 1)


def test_failures_become_messages():
    assert describe_error(ValueError("bad seed")) == "bad seed"
    assert "ran out of memory" in describe_error(torch.OutOfMemoryError("CUDA out of memory"))
    assert describe_error(RuntimeError("boom")) == ("the request failed (RuntimeError: boom); the "
                                                    "studio keeps serving.")
