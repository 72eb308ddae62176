"""Late-scale token pruning (sampling/levers.py): pivotal positions, restoring the rest, and
cache sizes."""


import pytest
import torch

from variant import DepthPlan
from variant.sampling.kv_cache import ChunkKVCache, LeanKVCache
from variant.sampling.levers import (
    gather_positions,
    pivotal_positions,
    restore_positions,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ pruning
def test_pivotal_positions_pick_the_outliers():
    x = torch.zeros(2, 9, 3)
    x[0, 6] = 10.0  # image 0: one outlier, then a weaker one
    x[0, 2] = -4.0
    x[1, 1] = 5.0  # image 1: outliers at 1 and 7
    x[1, 7] = -6.0
    assert pivotal_positions(x, 1).tolist() == [[6], [7]]
    assert pivotal_positions(x, 2).tolist() == [[2, 6], [1, 7]]
    assert pivotal_positions(x, 2).dtype == torch.int64
    # A constant offset changes no score (the score is the distance from the scale's mean).
    assert pivotal_positions(x + 3.0, 2).tolist() == [[2, 6], [1, 7]]


def test_pivotal_positions_are_sorted_unique_and_the_highest_scoring():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 36, 4, generator=g)
    for n in (1, 5, 18, 36):
        idx = pivotal_positions(x, n)
        assert idx.shape == (3, n)
        for b in range(3):
            chosen = idx[b].tolist()
            assert chosen == sorted(set(chosen))
            mean = [sum(float(x[b, i, c]) for i in range(36)) / 36 for c in range(4)]
            score = [sum((float(x[b, i, c]) - mean[c]) ** 2 for c in range(4))
                     for i in range(36)]
            rest = [score[i] for i in range(36) if i not in chosen]
            assert not rest or min(score[i] for i in chosen) >= max(rest)


def test_restore_positions_by_hand():
    """2x2 -> 4x4: area-upsampled previous hidden states, computed rows put back in place."""
    prev = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 4, 1)  # (R=1, m=4, D=1)
    prev = torch.cat([prev, 10 * prev], -1)  # D = 2: the second channel is 10x the first
    idx = torch.tensor([[0, 7, 15]])
    h = torch.tensor([[[100.0, -1.0], [200.0, -2.0], [300.0, -3.0]]])
    out = restore_positions(h, idx, prev, side=4)
    expected = torch.tensor([[100, 1, 2, 2],
                             [1, 1, 2, 200],
                             [3, 3, 4, 4],
                             [3, 3, 4, 300]], dtype=torch.float32).reshape(16)
    assert out.shape == (1, 16, 2)
    assert torch.equal(out[0, :, 0], expected)
    second = 10 * expected
    second[[0, 7, 15]] = torch.tensor([-1.0, -2.0, -3.0])
    assert torch.equal(out[0, :, 1], second)
    # Two rows per image (guidance): the same positions in both rows.
    both = restore_positions(torch.cat([h, h + 1]), idx, torch.cat([prev, prev]), side=4)
    assert torch.equal(both[0], out[0])
    assert both[1, 7, 0] == 201.0 and both[1, 1, 0] == 1.0
    # 2x2 -> 3x3 (the builtin's 2 -> 3 step): area averages the cells each output overlaps, so
    # the middle row and column are means (nearest-neighbour would copy instead).
    three = restore_positions(torch.tensor([[[50.0, 0.0]]]), torch.tensor([[8]]), prev, side=3)
    assert torch.equal(three[0, :, 0], torch.tensor([1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5,
                                                     50.0]))
    assert torch.equal(three[0, :4, 1], torch.tensor([10.0, 15.0, 20.0, 20.0]))
    # gather_positions takes the same positions out of (R, l, D)
    full = torch.arange(2 * 16 * 2, dtype=torch.float32).reshape(2, 16, 2)
    taken = gather_positions(full, idx)
    assert torch.equal(taken[1], full[1, [0, 7, 15]])


def test_a_cache_with_default_sizes_refuses_a_pruned_scale():
    plan = DepthPlan.full(2, 3)
    cache = LeanKVCache(plan, (1, 2, 4), 2, 1, 1, 1, torch.float32, "cpu")
    one = torch.zeros(1, 1, 1, 1)
    cache.callback(0, 0)(one, one)
    two = torch.zeros(1, 1, 2, 1)
    with pytest.raises(ValueError, match="scale 1 wrote 2 tokens but the cache was sized for 4"):
        cache.callback(0, 1)(two, two)
    with pytest.raises(ValueError, match="sizes=levers.sizes"):
        cache.callback(0, 1)(two, two)
    sized = LeanKVCache(plan, (1, 2, 4), 2, 1, 1, 1, torch.float32, "cpu", sizes=[1, 2, 8])
    sized.callback(0, 0)(one, one)
    keys = sized.callback(0, 1)(two, two)
    assert keys.k.shape[2] == 3  # 1 + 2 tokens
    chunk = ChunkKVCache(plan, (1, 2, 4), 2, 1, 1, 1, torch.float32, "cpu",
                         visible=lambda s, k: True)
    chunk.callback(0, 0)(one, one)
    with pytest.raises(ValueError, match="sized for 4"):
        chunk.callback(0, 1)(two, two)
