"""The KV accounting of levers is exact: the cost model's prediction equals the measured peak over
random combinations of plans and levers, and hand counts on tiny shapes."""

import random
import re

import pytest

from helpers import LABELS, levers_of, run
from variant import DepthPlan
from variant.models.cost import CostModel
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ random combinations
def random_plan(rng: random.Random, depth: int, K: int) -> DepthPlan:
    """Per scale a random non-empty sorted subset of the layers."""
    return DepthPlan([sorted(rng.sample(range(depth), rng.randint(1, depth))) for _ in range(K)],
                     depth)


def draw_plan(rng: random.Random, var):
    depth, K = var.depth, var.num_scales
    kind = rng.choice(["full", "paper", "bridge", "json", "json"])
    if kind == "full":
        return rng.choice(["full", None, var.full_plan()])
    if kind == "paper":
        return f"d{rng.choice([2, 4])}"
    if kind == "bridge":
        return f"d{rng.choice([1, 2, 4, 6])}@bridge{rng.randint(0, K)}"
    return random_plan(rng, depth, K)


def draw_levers(rng: random.Random, var, cfg: float) -> dict:
    K = var.num_scales
    out = {}
    if rng.random() < 0.5:
        out["prune"] = (rng.choice([0.25, 0.5, 0.75]), rng.randrange(K))
    if rng.random() < 0.5:
        out["kv_keep"] = (rng.randint(0, 2), rng.randint(0, 3))
    if rng.random() < 0.5:  # KV precision from scale 0, or per zone from a later scale
        out["kv_precision"] = (rng.choice(["int8", "fp8"]), rng.choice([0, rng.randrange(K)]))
    if cfg:
        if rng.random() < 0.5:
            out["cfg_stop"] = rng.randint(0, K)
        draw = rng.random()
        if draw < 0.5:
            guide = draw_plan(rng, var)
            out["guide_plan"] = guide if guide is not None else "full"
            out["guide_class"] = rng.choice(["null", "same"])
        elif draw < 0.6:  # autoguidance without a guide plan: refused by design
            out["guide_class"] = "same"
    return out


def test_kv_peak_matches_the_cost_model_over_random_combinations(builtin):
    var = builtin
    rng = random.Random(20240611)
    ran, refused, kinds, names, stacked = 0, 0, set(), set(), 0
    for _ in range(48):
        plan = draw_plan(rng, var)
        cfg = rng.choice([1.5, 1.5, 0.0])
        levers = draw_levers(rng, var, cfg)
        B, dtype = rng.randint(1, 3), rng.choice(["fp32", "bf16"])
        settings = SamplingConfig(cfg=cfg, dtype=dtype, seed=rng.randrange(100), top_k=50,
                                  **levers)
        try:
            result = generate(var, B, LABELS[B], settings=settings, plan=plan)
        except ValueError as err:
            # by design only autoguidance without another guide plan is refused
            assert levers.get("guide_class") == "same" and "guide_class 'same'" in str(err)
            if "guide_plan" in levers:
                guide = var.resolve_plan(levers["guide_plan"])
                assert guide.layer_sets == var.resolve_plan(plan).layer_sets
            refused += 1
            continue
        ran += 1
        resolved = var.resolve_plan(plan)
        expected_levers = levers_of(var, settings, resolved)
        assert result.levers == expected_levers
        if not result.levers.is_neutral:
            kinds.update(re.match("[a-z]+", part).group()
                         for part in result.levers.spec_parts())
            names.update(result.levers.spec_parts())
            values = dict(result.levers.values)
            stacked += {"kv_precision", "kv_keep", "prune"} <= values.keys()
        predicted = CostModel(var.config, settings.dtype, settings.rows(B)).kv_peak_bytes(
            resolved, expected_levers)
        assert result.kv_peak_bytes == predicted, (resolved.name, levers, B, dtype)
        assert [i.shape for i in result.indices] == [(B, p * p) for p in var.patch_nums]
    print(f"random combinations: {ran} ran, {refused} refused by design, levers {sorted(kinds)}")
    assert ran + refused == 48 and ran >= 40 and refused >= 1, (ran, refused)
    assert kinds >= {"cfgstop", "guide", "autoguide", "prune", "kv"}, kinds
    # KV precision in both formats, on every stored scale and per zone, beside KV retention
    precision = {p for p in names if re.fullmatch(r"kv(8|fp8)(@\d+)?", p)}
    assert {p.split("@")[0] for p in precision} == {"kv8", "kvfp8"}, names
    assert any("@" in p for p in precision) and any("," in p for p in names), names
    assert stacked >= 2, stacked  # precision in the chunked cache of retention, with pruning



# ------------------------------------------------------------------ hand-computed peaks
def test_hand_computed_peaks_on_the_tiny_shape(tiny):
    """random:tiny, width 64, scales 1, 4 and 16 tokens; one token-layer of keys and values of
    one row is 64 channels x 2 (k, v) x 4 bytes = 512 bytes in fp32 (256 in bf16)."""
    var = tiny
    assert var.config.width == 64 and tuple(var.patch_nums) == (1, 2, 4) and var.depth == 4
    row = 64 * 2 * 4
    # Plain full plan under guidance, B = 1 (2 rows): at the last scale layer 0 holds 1 + 4 kept
    # and 16 new tokens, layers 1-3 hold 5 each -> 21 + 15 = 36 token-layers per row.
    assert run(var, B=1).kv_peak_bytes == 36 * 2 * row
    # kv_keep=(0, 0): every scale attends only to itself, nothing is ever stored; the peak is
    # one layer's new keys/values of the largest scale, for the 2B rows of both groups (they run
    # the same layers in one pass and attend at the same time).
    for B in (1, 2, 3):
        assert run(var, B=B, kv_keep=(0, 0)).kv_peak_bytes == 2 * B * 16 * row
        assert run(var, B=B, kv_keep="0,0", dtype="bf16").kv_peak_bytes == B * 16 * row
        assert run(var, B=B, cfg=0.0, kv_keep=(0, 0)).kv_peak_bytes == B * 16 * row
    # kv_keep=(0, 1), cfg 0, B = 1: scale 1 stores its 4 tokens per layer and frees scale 0's
    # (4 x 4 after scale 1); at scale 2 layer 0 attends to its 4 + 16 new while layers 1-3 still
    # hold 4 each: 12 + 4 + 16 = 32 token-layers.
    assert run(var, B=1, cfg=0.0, kv_keep=(0, 1)).kv_peak_bytes == 32 * row
    # cfg_stop=0 is cfg 0: B rows only, 36 token-layers each.
    assert run(var, B=2, cfg_stop=0).kv_peak_bytes == 2 * 36 * row
    assert run(var, B=2, cfg=0.0).kv_peak_bytes == 2 * 36 * row
    # cfg_stop=2, B = 1: the guiding row runs scales 0-1 and keeps 1 token per layer; at scale 1
    # its layer 0 holds 1 + 4 new beside 4 x 5 of the conditional row and 3 of its own: 28;
    # at scale 2 the guiding row holds nothing and the conditional row peaks at 36.
    assert run(var, B=1, cfg_stop=2).kv_peak_bytes == 36 * row
    # prune=(0.25, 2), cfg 0, B = 1: scale 2 runs 4 of its 16 positions: 20 + 4 = 24.
    assert run(var, B=1, cfg=0.0, prune=(0.25, 2)).kv_peak_bytes == 24 * row
