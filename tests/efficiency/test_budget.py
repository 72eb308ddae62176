import pytest

from variant.cli.main import main
from variant.config import model_preset
from variant.efficiency.budget import (
    Predictor,
    Workload,
    candidate_plans,
    load_profile,
    model_bytes,
    predicted_options,
)
from variant.efficiency.choice import Budget, choose
from variant.pretrained import random_model
from variant.sampling.plan import DepthPlan
from variant.sampling.settings import SamplingConfig
from variant.units import parse_duration, parse_size

TINY = model_preset("tiny")  # D=4, width 64, scales (1, 2, 4), default bridge 2
KIB = 1024  # one token-layer at batch 1 with CFG in fp32: 2 rows x 64 x 4 B x (k, v)


def _predictor(batch=1, dtype="fp32", profile=None):
    workload = Workload(batch=batch, sampling=SamplingConfig(dtype=dtype))
    return Predictor(TINY.var, TINY.vae, workload, profile)


def _choose(budget, predictor=None):
    plans = candidate_plans(4, 3, 2)
    return choose(budget, predicted_options(predictor or _predictor(), plans)).chosen.spec


def test_parse_size_and_duration():
    assert parse_size("16GiB") == 16 * 2**30
    assert parse_size("500MB") == 500_000_000
    assert parse_size("2G") == 2 * 2**30 and parse_size("1.5 KiB") == 1536
    assert parse_size("1024") == 1024 and parse_size(7) == 7
    assert parse_duration("2s") == 2.0 and parse_duration("500ms") == 0.5
    assert parse_duration("1.5min") == 90.0 and parse_duration("3") == 3.0
    for bad in ("16 parsecs", "GiB", "-3MB"):
        with pytest.raises(ValueError, match="cannot read the size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="cannot read the duration"):
        parse_duration("soon")


def test_candidates_order_deepest_first():
    names = [p.name for p in candidate_plans(4, 3, 2)]
    assert names == ["full", "d3", "d2", "d3@bridge1", "d2@bridge1", "d3@bridge0", "d2@bridge0"]
    assert [p.name for p in candidate_plans(4, 3, 2, [2], pin_bridge=True)] == ["full", "d2"]
    assert candidate_plans(4, 3) == candidate_plans(4, 3, 2)  # None: the default bridge


def test_kv_budget_picks_hand_computed_plan():
    # Peak token-layers by hand: full 36 (last scale, layer 0: 1+4+16, layers 1-3: 5 each);
    # d3 = {0,1,3}: 21 + 5 + 5 = 31; d2 = {0,3}: 21 + 5 = 26 (layers 1, 2 retired).
    assert _choose(Budget(max_kv=36 * KIB)) == "full"
    assert _choose(Budget(max_kv=32 * KIB)) == "d3"
    assert _choose(Budget(max_kv=30 * KIB)) == "d2"
    bf16 = _predictor(batch=2, dtype="bf16")  # 4 rows x 2 B: the same bytes per token-layer
    assert _choose(Budget(max_kv=31 * KIB), bf16) == "d3"
    with pytest.raises(ValueError, match=r"cheapest, d2@bridge0, needs KV 26.0 KiB > 25.0 KiB; "
                                         r"raise the budget or lower the batch"):
        _choose(Budget(max_kv=25 * KIB))


def test_memory_prediction_parts():
    pred = _predictor()
    var, vae = random_model("tiny", "cpu")
    real = sum(t.numel() * t.element_size() for m in (var, vae)
               for t in (*m.parameters(), *m.buffers()))
    assert model_bytes(TINY.var, TINY.vae) == pred.weights == real
    full = pred.predict(DepthPlan.full(4, 3))
    assert full.kv_bytes == 36 * KIB
    assert full.memory_bytes == real + max(36 * KIB + pred.act_transformer, pred.act_decoder)
    # tiny: the transformer's activations outweigh the decoder's, so KV + activations count
    assert pred.act_transformer > pred.act_decoder
    d3 = pred.predict(DepthPlan.paper(4, 3, 2, 3))
    assert full.memory_bytes - d3.memory_bytes == 5 * KIB
    assert _choose(Budget(max_memory=d3.memory_bytes)) == "d3"
    with pytest.raises(ValueError, match="cheapest, d2@bridge0, needs memory"):
        _choose(Budget(max_memory=real))
    assert _predictor(dtype="bf16").weights == real * 3 // 2  # + autocast's 16-bit copies


def _profile(**changes):
    profile = {"format": "variant-latency-profile", "device": "cpu", "rows": 4,
               "settings": {"batch": 2, "dtype": "fp32"},
               "model": {"depth": 4, "width": 64, "patch_nums": [1, 2, 4]},
               # seconds per layer 0.05 + 0.005 x rows x tokens: no attention term, so every
               # layer of any plan takes its scale's time (the step model fits it exactly)
               "scales": [{"seconds_per_layer": s, "overhead_seconds": 0.01, "tokens": n}
                          for s, n in ((0.07, 1), (0.13, 4), (0.37, 16))],
               "decoder_seconds": 0.5}
    profile.update(changes)
    return profile


def test_latency_budget_from_profile():
    pred = _predictor(batch=2, profile=_profile())
    # full: 3 x 0.01 + 4 x (0.07 + 0.13 + 0.37) + 0.5 = 2.81; d3: 2.44; d2: 2.07
    assert pred.latency(DepthPlan.full(4, 3)) == pytest.approx(2.81)
    assert pred.latency(DepthPlan.paper(4, 3, 2, 3)) == pytest.approx(2.44)
    assert _choose(Budget(max_latency=2.6), pred) == "d3"
    assert _choose(Budget(max_latency=2.2), pred) == "d2"
    double = _predictor(batch=4, profile=_profile())  # scaled linearly with the batch
    assert double.latency(DepthPlan.full(4, 3)) == pytest.approx(5.62)
    with pytest.raises(ValueError, match="measured for a model"):
        _predictor(profile=_profile(model={"depth": 5, "width": 64, "patch_nums": [1, 2, 4]}))
    with pytest.raises(ValueError, match="has a latency cost .* needs a profile"):
        _choose(Budget(max_latency=1.0))  # no profile: no predicted latency


def test_plan_cli_budget(capsys):
    argv = ["plan", "--model", "random:tiny", "--batch", "1", "--dtype", "fp32",
            "--device", "cpu", "--max-kv"]
    # under a KV limit each plan is also a candidate with int8 KV, ranked after it and before
    # the next shallower plan: the full network with int8 KV (2 rows x (3 x 5 x 160 + 21 x 512)
    # B = 25.7 KiB, counted in tests/sampling/test_kv_precision.py) comes before d3 (31.0 KiB)
    assert main(argv + ["32KiB"]) == 0
    out = capsys.readouterr().out
    assert "chosen plan: full+kv8 " in out and "predicted KV cache: 25.7 KiB" in out
    assert "the next deeper plan, full, needs KV 36.0 KiB > 32.0 KiB" in out
    assert "variant bench --model random:tiny --plans full+kv8 --batch 1" in out
    assert main(argv + ["20KiB"]) == 2
    assert "the cheapest, d2@bridge0+kv8, needs KV 22.6 KiB" in capsys.readouterr().err
    assert main(["plan", "--depth", "30", "--batch", "64", "--max-kv", "16GiB"]) == 0
    assert "chosen plan: full" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [("{bad", "is not valid JSON"),
                                           ("[1, 2]", "is not a latency profile")])
def test_a_broken_profile_file_is_named_with_the_fix(tmp_path, text, message):
    path = tmp_path / "profile.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_profile(path)
    assert str(path) in str(err.value) and "variant bench" in str(err.value)
