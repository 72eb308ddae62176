"""Invariant 3: the lean KV cache holds only what the plan needs, and reports it."""

import pytest
import torch

from helpers import cached_logits
from variant import DepthPlan, VARConfig
from variant.config import PATCH_NUMS_256
from variant.models.cost import CostModel
from variant.models.var import VAR
from variant.sampling.kv_cache import LeanKVCache

# DESIGN invariant 3: peak token-layers / (D * L) for D=30, N=6 at 256 px.
PAPER_RATIOS = {30: 0.636, 16: 0.345, 8: 0.179, 4: 0.096, 2: 0.084}


@pytest.mark.parametrize("d, ratio", sorted(PAPER_RATIOS.items()))
def test_plan_bound_matches_design(d, ratio):
    plan = DepthPlan.paper(30, d, 6, 10)
    assert plan.kv_peak_token_layers(PATCH_NUMS_256) / (30 * 680) == pytest.approx(ratio, abs=6e-4)


@pytest.fixture(scope="module")
def deep_narrow():
    """D = 30 like VAR-d30, but 8 channels wide: the cache's token accounting is what counts."""
    torch.manual_seed(0)
    cfg = VARConfig(depth=30, embed_dim=8, num_heads=1, num_classes=4, V=16, Cvae=4,
                    patch_nums=PATCH_NUMS_256, drop_path_rate=0.0, cond_drop_rate=0.0)
    return VAR(cfg).eval()


@pytest.mark.parametrize("d", sorted(PAPER_RATIOS))
def test_measured_peak_equals_bound(deep_narrow, d):
    """The cache's own buffers peak exactly at the lean bound, for the full network and d16..d2."""
    var = deep_narrow
    plan = DepthPlan.paper(30, d, 6, 10)
    label = torch.tensor([1, 2])
    x = torch.randn(2, var.L - 1, var.Cvae)
    with torch.no_grad():
        _, cache = cached_logits(var, label, x, plan)
    bound = plan.kv_peak_token_layers(var.patch_nums)
    assert cache.token_layers_peak == bound
    assert cache.token_layers_peak / (30 * var.L) == pytest.approx(PAPER_RATIOS[d], abs=6e-4)
    # the one KV prediction (the sampler's loop on the meta device) gives the same bytes
    assert cache.peak_bytes == CostModel(var.config, "fp32", rows=2).kv_peak_bytes(plan)


def test_late_growth_closes_the_d2_gap_and_changes_no_output(deep_narrow):
    """d2 at D=30 peaks at the bridge end: layer 29's preallocated room for the last bridge scale
    was counted while layer 1 ran (2.1% over the bound); growing it late removes that, and the
    extra copy changes no logit."""
    var = deep_narrow
    plan = DepthPlan.paper(30, 2, 6, 10)
    bound = plan.kv_peak_token_layers(var.patch_nums)
    label, x = torch.tensor([0, 3]), torch.randn(2, var.L - 1, var.Cvae)
    with torch.no_grad():
        late, cache = cached_logits(var, label, x, plan)
        preallocated, eager = cached_logits(var, label, x, plan, grow_late=frozenset())
    assert eager.token_layers_peak == bound + 36  # 36 = the 6x6 scale's tokens in one layer
    assert cache.token_layers_peak == bound
    assert torch.equal(late, preallocated)


def test_bytes_follow_dtype_and_batch(deep_narrow):
    var = deep_narrow
    plan = DepthPlan.paper(30, 8, 6, 10)
    x = torch.randn(3, var.L - 1, var.Cvae)
    with torch.no_grad():
        _, c32 = cached_logits(var, torch.tensor([0, 1, 2]), x, plan)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, c16 = cached_logits(var, torch.tensor([0, 1, 2]), x, plan, dtype=torch.bfloat16)
    per_token_fp32 = 3 * 1 * 8 * 4 * 2  # rows * heads * head_dim * bytes * (k and v)
    assert c32.bytes_per_token == per_token_fp32
    assert c16.peak_bytes * 2 == c32.peak_bytes


def _held(slot) -> int | None:
    """Tokens of room a layer's (one) segment holds now; None when it holds no buffer."""
    (segment,) = slot.segments
    return None if segment.store is None else segment.store.k.shape[2]


def test_layers_release_after_last_use(deep_narrow):
    """After the bridge zone only subnet layers hold memory; after the last scale, none."""
    var = deep_narrow
    plan = DepthPlan.paper(30, 4, 6, 10)
    cache = LeanKVCache(plan, var.patch_nums, 30, 2, 1, 8, torch.float32, "cpu")
    assert all(_held(s) is not None for s in cache.slots)  # bridge buffers
    sizes = [p * p for p in var.patch_nums]
    for k in range(10):
        for layer in plan.layers_at(k):
            kk = torch.randn(2, 1, sizes[k], 8)
            cache.callback(layer, k)(kk, kk.clone())
        holding = [i for i, s in enumerate(cache.slots) if _held(s) is not None]
        if k == 5:
            assert holding == list(plan.layers_at(9))
        if 6 <= k < 9:
            assert all(_held(cache.slots[i]) == 424 for i in holding)
    assert cache.live_bytes == 0 and all(_held(s) is None for s in cache.slots)
