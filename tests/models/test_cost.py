"""The cost model against hand counts and the DESIGN anchors (not against its own formulas)."""

import pytest
import torch

from variant import DepthPlan, VARConfig
from variant.config import model_preset
from variant.models.cost import CostModel
from variant.sampling.settings import guided_rows

# Two layers, width 8 (FFN 32), one head, vocab 16, Cvae 4; scales of 1, 4 and 9 tokens.
SMALL = VARConfig(depth=2, embed_dim=8, num_heads=1, V=16, Cvae=4, patch_nums=(1, 2, 3))
TINY = model_preset("tiny").var  # D=4, width 64, scales (1, 2, 4): 1 + 4 + 16 = 21 tokens


def test_flops_of_a_two_layer_width_8_model_counted_by_hand():
    # Multiply-adds of one token through one layer: qkv 8x24 = 192, proj 8x8 = 64,
    # fc1 8x32 = 256, fc2 32x8 = 256 -> 768, i.e. 1536 FLOPs. Attention of n queries over m keys
    # of width 8: QK^T 8nm and PV 8nm multiply-adds -> 32nm FLOPs.
    layer = {(1, 1): 1 * 1536 + 32 * 1 * 1,  # scale 1: 1 token, sees itself
             (4, 5): 4 * 1536 + 32 * 4 * 5,  # scale 2: 4 tokens, see 1 + 4
             (9, 14): 9 * 1536 + 32 * 9 * 14,  # scale 3: 9 tokens, see 1 + 4 + 9
             (9, 10): 9 * 1536 + 32 * 9 * 10}  # scale 3 of a layer that skipped scale 2
    assert layer == {(1, 1): 1568, (4, 5): 6784, (9, 14): 17856, (9, 10): 16704}
    cost = CostModel(SMALL)
    full = DepthPlan.full(2, 3)
    assert cost.flops_per_scale(full) == [2 * 1568, 2 * 6784, 2 * 17856]
    # Word embedding 4x8 and vocab head 8x16 multiply-adds per token: 160, i.e. 320 FLOPs.
    assert cost.flops_per_scale(full, include_head=True) == [
        2 * 1568 + 320, 2 * 6784 + 4 * 320, 2 * 17856 + 9 * 320]
    gappy = DepthPlan([[0, 1], [0], [0, 1]], 2)  # layer 1 skips scale 2
    assert cost.flops_per_scale(gappy) == [2 * 1568, 6784, 17856 + 16704]
    assert cost.flops(gappy) == 2 * 1568 + 6784 + 17856 + 16704
    # All rows of the workload: three sequences cost three times one.
    assert CostModel(SMALL, rows=3).flops(gappy, include_head=True) == 3 * (
        cost.flops(gappy) + 14 * 320)


def test_design_anchors_d30():
    cost = CostModel(VARConfig(depth=30))  # C = 1920, 256 px, N = 6
    full = DepthPlan.full(30, 10)
    assert cost.token_layers(full) == 30 * 680
    bounds = {16: 1.68, 8: 2.76, 4: 4.07, 2: 5.33}  # DESIGN section 4
    for d, bound in bounds.items():
        assert cost.flops(full) / cost.flops(DepthPlan.paper(30, d, 6, 10)) == pytest.approx(
            bound, abs=0.005)
    # Scales 7..10 carry 86% of the FLOPs; their token share is 589/680 = 0.866 (the linear
    # layers); attention, which grows with the context, lifts it to 0.870.
    per_scale = cost.flops_per_scale(full)
    assert sum(per_scale[6:]) / sum(per_scale) == pytest.approx(0.870, abs=0.001)
    # Invariant 3: lean peak token-layers as a fraction of the official D x 680.
    fractions = {"full": 0.636, "d16": 0.345, "d8": 0.179, "d4": 0.096, "d2": 0.084}
    assert cost.official_kv_token_layers() == 30 * 680
    for spec, fraction in fractions.items():
        plan = DepthPlan.from_spec(spec, 30, 10)
        assert cost.kv_peak_token_layers(plan) / (30 * 680) == pytest.approx(fraction, abs=5e-4)


def test_kv_bytes_by_hand_tiny():
    # Full plan, peak while the last scale (16 tokens) runs layer 0: layer 0 holds 1 + 4 kept +
    # 16 new tokens, layers 1-3 hold 1 + 4 each -> 21 + 15 = 36 token-layers.
    # d2 = {0, 3} after a bridge of 2: layers 1 and 2 retired -> 21 + 5 = 26.
    full, d2 = DepthPlan.full(4, 3), DepthPlan.paper(4, 2, 2, 3)
    fp32 = CostModel(TINY, "fp32", rows=guided_rows(1, cfg=1.5))  # 2 rows
    assert fp32.kv_bytes_per_token_layer() == 2 * 64 * 2 * 4  # rows x C x (k, v) x 4 B
    assert fp32.kv_peak_token_layers(full) == 36 and fp32.kv_peak_token_layers(d2) == 26
    assert fp32.kv_peak_bytes(full) == 36 * 1024 and fp32.kv_peak_bytes(d2) == 26 * 1024
    bf16 = CostModel(TINY, torch.bfloat16, rows=4)  # 4 rows x 2 B: the same bytes per token-layer
    assert bf16.kv_peak_bytes(full) == 36 * 1024
    # Official sampler: 4 layers x 21 tokens, 2 rows x 64 channels; k + v = 4 + 4 B in fp32,
    # 4 + 2 B under 16-bit autocast (keys fp32 after the L2 norm), 2 + 2 B without the norm.
    assert fp32.official_kv_bytes() == 4 * 21 * 2 * 64 * 8 == 86016
    assert CostModel(TINY, "fp16", rows=2).official_kv_bytes() == 4 * 21 * 2 * 64 * 6
    plain = VARConfig(depth=4, embed_dim=64, num_heads=4, patch_nums=(1, 2, 4),
                      attn_l2_norm=False)
    assert CostModel(plain, "bf16", rows=2).official_kv_bytes() == 4 * 21 * 2 * 64 * 4


def test_guided_rows_and_bad_input():
    assert guided_rows(3, 1.5) == 6 and guided_rows(3, 0) == 3 and guided_rows(3, False) == 3
    with pytest.raises(ValueError, match="rows"):
        CostModel(TINY, rows=0)
    with pytest.raises(ValueError, match="unknown compute dtype"):
        CostModel(TINY, "fp8")
    with pytest.raises(ValueError, match="built for a 30-layer model"):
        CostModel(TINY).flops(DepthPlan.full(30, 3))
