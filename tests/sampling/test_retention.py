"""KV retention (sampling/levers.py): which scales a scale attends to, and the chunked cache that
frees each entry after its last reader."""


import pytest
import torch

from variant import DepthPlan
from variant.sampling.kv_cache import ChunkKVCache
from variant.sampling.levers import (
    Levers,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ KV retention
def make_levers(K=6, **changes) -> Levers:
    return Levers.build(changes, DepthPlan.full(2, K), (1, 2, 3, 4, 6, 8)[:K], guided=False)


def test_visible_by_hand():
    lv = make_levers(kv_keep=(1, 2))
    table = {k: [s for s in range(6) if lv.visible(s, k)] for k in range(6)}
    assert table == {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [0, 2, 3, 4],
                     5: [0, 3, 4, 5]}
    only_self = make_levers(kv_keep=(0, 0))
    assert {k: [s for s in range(6) if only_self.visible(s, k)] for k in range(6)} == {
        k: [k] for k in range(6)}
    firsts = make_levers(kv_keep=(2, 0))
    assert [s for s in range(6) if firsts.visible(s, 5)] == [0, 1, 5]
    assert [s for s in range(6) if firsts.visible(s, 1)] == [0, 1]
    # a window covering every earlier scale is neutral: the plain sampler runs
    assert make_levers(kv_keep=(0, 5)).is_neutral and make_levers(kv_keep=(3, 2)).is_neutral
    assert make_levers(kv_keep=(0, 4)).get("kv_keep") == (0, 4)
    plain = make_levers(prune=(0.5, 4))
    assert all(plain.visible(s, k) == (s <= k) for s in range(6) for k in range(6))


def test_chunk_cache_frees_an_entry_right_after_its_last_reader():
    """One layer, scales of 1, 4, 9 and 16 tokens, kv_keep=(1, 1): scale k reads scale 0, scale
    k-1 and itself. One token of keys and values: 1 row x 1 head x 2 channels x 2 x 4 B = 16 B."""
    lv = make_levers(K=4, kv_keep=(1, 1))
    plan = DepthPlan.full(1, 4)
    cache = ChunkKVCache(plan, (1, 2, 3, 4), 1, 1, 1, 2, torch.float32, "cpu",
                         visible=lv.visible)
    assert cache.bytes_per_token == 16
    g = torch.Generator().manual_seed(0)
    new = [torch.randn(1, 1, n, 2, generator=g) for n in (1, 4, 9, 16)]
    parts, live = [], []
    for k in range(4):
        keys = cache.callback(0, k)(new[k], -new[k])
        parts.append([kk.shape[2] for kk, _ in keys.parts])
        live.append(cache.live_bytes)
        if k == 2:  # scale 1 was freed at its last reader, but the read still sees it
            assert torch.equal(keys.parts[1][0], new[1]) and torch.equal(keys.parts[1][1],
                                                                         -new[1])
            assert sorted(cache.entries[0]) == [0, 2]
    assert parts == [[1], [1, 4], [1, 4, 9], [1, 9, 16]]
    # after scale 0: its 1 token; after 1: + 4; after 2: + 9 - 4 (scale 1's last reader);
    # after 3: scale 3 never stored, scales 0 and 2 freed -> 0
    assert live == [16, 80, 160, 0]
    # peak: at scale 3, 1 + 9 held and 16 new attended to -> 26 tokens
    assert cache.peak_bytes == 26 * 16
    assert cache.entries == [{}]


def test_chunk_cache_on_meta_skips_layers_that_do_not_run():
    """A layer that skips scales: only its own scales are stored and read."""
    lv = make_levers(K=4, kv_keep=(0, 1))
    plan = DepthPlan([[0, 1], [0], [1], [0, 1]], 2)
    cache = ChunkKVCache(plan, (1, 2, 3, 4), 2, 1, 1, 1, torch.float32, "meta",
                         visible=lv.visible)
    tok = 8  # 1 row x 1 head x 1 channel x 2 x 4 B
    t = [torch.empty(1, 1, n, 1, device="meta") for n in (1, 4, 9, 16)]
    # layer 0 runs 0, 1, 3: scale 0 read by 1; scale 1 read by nobody (3 sees only 2 and 3)
    # layer 1 runs 0, 2, 3: scale 0 read by nobody (2 sees 1, 2); scale 2 read by 3
    assert cache.readers == [{0: [1], 1: [], 3: []}, {0: [], 2: [3], 3: []}]
    cache.callback(0, 0)(t[0], t[0])
    cache.callback(1, 0)(t[0], t[0])
    assert cache.live_bytes == 1 * tok
    assert cache.callback(0, 1)(t[1], t[1]).num_parts == 2
    assert cache.live_bytes == 0
    assert cache.callback(1, 2)(t[2], t[2]).num_parts == 1
    assert cache.live_bytes == 9 * tok
    assert cache.callback(0, 3)(t[3], t[3]).num_parts == 1
    assert cache.callback(1, 3)(t[3], t[3]).num_parts == 2
    assert cache.live_bytes == 0 and cache.peak_bytes == (9 + 16) * tok
