"""Inference levers (sampling/levers.py): neutral settings are identities, non-neutral ones change
something, and bad settings are clear errors."""


import pytest
import torch

import variant
from helpers import LABELS, levers_of, run, same_indices
from variant import DepthPlan
from variant.models.cost import CostModel
from variant.sampling.lever import LEVERS
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ neutral and non-neutral
@pytest.mark.parametrize("spec", ["full", "d2"])
def test_neutral_settings_are_identities(builtin, spec):
    var = builtin
    K = var.num_scales  # 6
    plan = var.resolve_plan(spec)
    plain = run(var, plan=plan)
    assert plain.levers.is_neutral
    neutral = [dict(cfg_stop=K), dict(prune=(1.0, 0)), dict(prune="1@3"),
               dict(kv_keep=(0, K - 1)), dict(kv_keep=(2, 3)), dict(kv_keep="4,4"),
               dict(guide_plan=plan), dict(guide_plan=spec),
               dict(guide_plan=DepthPlan(plan.layer_sets, var.depth)),  # same layers, JSON name
               dict(guide_plan=spec, guide_class="null"),
               dict(cfg_stop=K, prune=(1.0, 0), kv_keep=(1, K - 2), guide_plan=spec)]
    for lever in neutral:
        result = run(var, plan=plan, **lever)
        assert result.levers.is_neutral, lever
        assert same_indices(result, plain), lever
        assert result.kv_peak_bytes == plain.kv_peak_bytes, lever
        assert torch.equal(result.images, plain.images), lever


@pytest.mark.parametrize("spec", ["full", "d2"])
def test_non_neutral_levers_change_tokens_and_costs(builtin, spec):
    """The identity test above could fail: each lever, one step from neutral, changes the
    tokens, and the KV peak or the FLOPs."""
    var = builtin
    K = var.num_scales
    plan = var.resolve_plan(spec)
    other = "d4" if spec == "full" else "full"
    plain = run(var, plan=plan)
    cost = CostModel(var.config, "fp32", rows=4)
    plain_flops = cost.flops(plan, include_head=True)
    for lever in [dict(cfg_stop=K - 1), dict(guide_plan=other), dict(prune=(0.75, K - 1)),
                  dict(kv_keep=(1, K - 3)), dict(kv_keep=(0, K - 2)),
                  dict(guide_plan=other, guide_class="same")]:
        settings = SamplingConfig(seed=3, **lever)
        result = run(var, plan=plan, **lever)
        assert not result.levers.is_neutral and result.levers == levers_of(var, settings, plan)
        assert not same_indices(result, plain), lever
        flops = cost.flops(plan, include_head=True, levers=result.levers)
        assert flops != plain_flops or result.kv_peak_bytes != plain.kv_peak_bytes, lever


def test_grouped_path_equals_plain_path_when_the_lever_changes_nothing(builtin):
    """A plan whose every layer runs one scale attends to nothing earlier, so KV retention
    kv_keep=(0, 0) (a ChunkKVCache, the grouped path) changes no number: same tokens as the
    plain sampler. cfg_stop=0 under cfg 1.5 samples exactly as cfg 0 does."""
    var = builtin
    one_scale_each = DepthPlan([[k] for k in range(var.num_scales)], var.depth)
    plain = run(var, plan=one_scale_each, cfg=0.0)
    retained = run(var, plan=one_scale_each, cfg=0.0, kv_keep=(0, 0))
    assert not retained.levers.is_neutral and retained.levers.get("kv_keep") == (0, 0)
    assert same_indices(plain, retained)
    stopped = run(var, cfg=1.5, cfg_stop=0)
    assert not stopped.levers.is_neutral and stopped.levers.get("cfg_stop") == 0
    assert same_indices(stopped, run(var, cfg=0.0))



# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, phrases", [
    (dict(prune="2@3"), ["0 < KEEP <= 1", "e.g. 0.5@8"]),
    (dict(prune=(0.0, 3)), ["0 < KEEP <= 1", "e.g. 0.5@8"]),
    (dict(prune="0.5"), ["cannot read prune '0.5'", "KEEP@SCALE", "e.g. 0.5@8"]),
    (dict(kv_keep="1"), ["cannot read kv_keep '1'", "FIRST,RECENT", "e.g. 1,2"]),
    (dict(kv_keep="-1,2"), ["kv_keep '-1,2'", "e.g. 1,2"]),
    (dict(kv_keep=(-1, 2)), ["FIRST >= 0", "e.g. 1,2"]),
    (dict(guide_class="other"), ["guide_class must be 'null'", "'same'", "'other'"]),
    (dict(cfg_stop=-1), ["cfg_stop must be a 0-based scale index", "e.g. cfg_stop=8"]),
    (dict(cfg_stop=2.5), ["cfg_stop must be", "e.g. cfg_stop=8"]),
    (dict(guide_plan=" "), ["guide_plan is empty", "'d2'"]),
])
def test_bad_settings_are_clear_errors(kwargs, phrases):
    with pytest.raises(ValueError) as err:
        SamplingConfig(**kwargs)
    for phrase in phrases:
        assert phrase in str(err.value), (phrase, str(err.value))


def test_parsers_accept_both_forms():
    prune, kv_keep = LEVERS["prune"].read, LEVERS["kv_keep"].read
    assert prune("0.5@8") == prune((0.5, 8)) == (0.5, 8)
    assert prune(" .25 @ 3 ") == (0.25, 3)
    assert kv_keep("1,2") == kv_keep((1, 2)) == (1, 2)
    assert prune(None) is None and kv_keep(None) is None


@pytest.mark.parametrize("kwargs, phrases", [
    (dict(cfg_stop=7), ["cfg_stop must be a scale index in 0..6", "got 7"]),
    (dict(cfg=0.0, cfg_stop=3), ["cfg_stop", "guidance is off", "e.g. --cfg 1.5"]),
    (dict(cfg=0.0, guide_plan="d2"), ["guide_plan", "guidance is off", "e.g. --cfg 1.5"]),
    (dict(cfg=0.0, guide_plan="d2", guide_class="same"), ["guide_class='same'",
                                                          "e.g. --cfg 1.5"]),
    (dict(guide_class="same"), ["guide_class 'same'", "e.g. guide_plan='d2'"]),
    (dict(guide_class="same", guide_plan="full"), ["guide_class 'same'", "guide_plan='d2'"]),
    (dict(guide_plan="d9"), ["subnet_depth must be in 1..8"]),
])
def test_bad_levers_for_the_model_are_clear_errors(builtin, kwargs, phrases):
    with pytest.raises(ValueError) as err:
        run(builtin, B=1, **kwargs)
    for phrase in phrases:
        assert phrase in str(err.value), (phrase, str(err.value))


def test_var_generate_takes_the_lever_keywords():
    from variant.sampling.sampler import generate as engine_generate
    from variant.sampling.settings import SamplingConfig

    var, _ = variant.load_model("builtin")
    by_keywords = var.generate(2, [1, 2], seed=3, cfg_stop=5, prune="0.5@4", kv_keep=(1, 2),
                               guide_plan="d2", guide_class="same")
    settings = SamplingConfig(seed=3, cfg_stop=5, prune=(0.5, 4), kv_keep="1,2",
                              guide_plan="d2", guide_class="same")
    by_settings = engine_generate(var, 2, [1, 2], settings=settings)
    assert by_keywords.levers == by_settings.levers
    assert by_keywords.levers.get("guide_class") == "same"
    assert by_keywords.levers.get("prune") == (0.5, 4)
    assert all(torch.equal(a, b) for a, b in zip(by_keywords.indices, by_settings.indices))


def test_row_groups_run_together_give_the_plain_tokens(builtin):
    """The batched pass of two row groups (RowSplit attention, one cache per group) samples what
    the plain sampler samples: a plan whose every layer runs at one scale only keeps nothing,
    so kv_keep=(0, 0) changes nothing but the path (two groups, chunked caches, per-group
    attention), with guidance on."""
    var = builtin
    K, depth = var.num_scales, var.depth
    sets = [[layer for layer in range(depth) if layer % K == k] or [k % depth] for k in range(K)]
    plan = DepthPlan(sets, depth)
    assert all(len(plan.scales_of_layer(layer)) <= 1 for layer in range(depth))
    plain = generate(var, 3, LABELS[3], settings=SamplingConfig(seed=5), plan=plan)
    grouped = generate(var, 3, LABELS[3], settings=SamplingConfig(seed=5, kv_keep=(0, 0)),
                       plan=plan)
    assert plain.levers.is_neutral and not grouped.levers.is_neutral and grouped.levers.guided
    assert all(torch.equal(a, b) for a, b in zip(plain.indices, grouped.indices))
    assert grouped.kv_peak_bytes == plain.kv_peak_bytes  # both groups' new keys count at once
