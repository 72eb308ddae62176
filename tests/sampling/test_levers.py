"""Inference levers (sampling/levers.py): neutral settings are identities, non-neutral ones change
something, the KV accounting is exact (against the cost model over random combinations, and
against an independent census of the storages the caches hold), hand counts on tiny shapes,
pruning and retention semantics, multi-part attention and bad input."""

import math
import random
import re

import pytest
import torch

import variant
from variant import DepthPlan
from variant.models.cost import CostModel
from variant.pretrained import random_model
from variant.sampling import attention, kv_cache, sampler
from variant.sampling.attention import Attendable, multi_part_attention
from variant.sampling.configuration import Configuration
from variant.sampling.kv_cache import ChunkKVCache, LeanKVCache, RowGroupsCache
from variant.sampling.lever import LEVERS
from variant.sampling.levers import (
    Levers,
    gather_positions,
    pivotal_positions,
    restore_positions,
)
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = {1: [3], 2: [1, 7], 3: [0, 4, 9]}


@pytest.fixture(scope="module")
def builtin():
    """The shipped model: depth 8, width 128 (4 heads of 32), scales (1, 2, 3, 4, 6, 8)."""
    var, _ = variant.load_model("builtin")
    assert var.depth == 8 and tuple(var.patch_nums) == (1, 2, 3, 4, 6, 8)
    assert var.config.width == 128
    return var


@pytest.fixture(scope="module")
def tiny():
    """random:tiny: depth 4, width 64 (4 heads of 16), scales (1, 2, 4): 1 + 4 + 16 tokens."""
    var, _ = random_model("tiny", "cpu", seed=0)
    with torch.no_grad():  # move off the near-identity init so every layer matters
        for p in var.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return var


def same_indices(a, b) -> bool:
    return len(a.indices) == len(b.indices) and all(
        torch.equal(x, y) for x, y in zip(a.indices, b.indices))


def run(var, B=2, plan=None, **settings):
    settings.setdefault("seed", 3)
    return generate(var, B, LABELS[B], settings=SamplingConfig(**settings), plan=plan)


def levers_of(var, settings: SamplingConfig, plan) -> Levers:
    return Configuration.of(var, plan, settings).levers


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
    ran, refused, kinds = 0, 0, set()
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
        predicted = CostModel(var.config, settings.dtype, settings.rows(B)).kv_peak_bytes(
            resolved, expected_levers)
        assert result.kv_peak_bytes == predicted, (resolved.name, levers, B, dtype)
        assert [i.shape for i in result.indices] == [(B, p * p) for p in var.patch_nums]
    print(f"random combinations: {ran} ran, {refused} refused by design, levers {sorted(kinds)}")
    assert ran + refused == 48 and ran >= 40 and refused >= 1, (ran, refused)
    assert kinds >= {"cfgstop", "guide", "autoguide", "prune", "kv"}, kinds


# ------------------------------------------------------------------ independent census
class Census:
    """Sums the bytes of the distinct storages the caches of one call hold, at every cache
    callback and at every buffer growth, without reading any meter."""

    def __init__(self):
        self.groups = []
        self.peak = 0
        self.samples = 0
        # Inside one pass over several row groups (RowGroupsCache) the groups attend at the same
        # time: what an earlier group reads stays alive while the later ones store theirs.
        self.pass_tensors: list = []
        self.pass_bytes = 0

    def held(self, extra=()) -> int:
        storages = {}
        tensors = list(extra) + self.pass_tensors
        for group in self.groups:
            cache = group.cache
            if isinstance(cache, LeanKVCache):
                tensors += [t for slot in cache.slots for t in (slot.k, slot.v) if t is not None]
            else:
                tensors += [t for entries in cache.entries for kv in entries.values()
                            for t in kv]
        for t in tensors:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return sum(storages.values())

    def record(self, extra_bytes=0, extra=()) -> None:
        self.samples += 1
        self.peak = max(self.peak, self.held(extra) + extra_bytes + self.pass_bytes)

    def after_group(self, read: list, unstored: int) -> None:
        """In a pass: the buffers this group read and its unstored new keys/values stay alive."""
        if self.in_pass:
            self.pass_tensors += read
            self.pass_bytes += unstored

    in_pass = False

    def mine(self, cache) -> bool:
        return any(group.cache is cache for group in self.groups)

    def plan_of(self, cache) -> DepthPlan:
        return next(group.plan for group in self.groups if group.cache is cache)


def new_bytes(cache, k_new) -> int:
    """Keys and values of one scale, in the cache's dtype."""
    return 2 * k_new.numel() * torch.empty((), dtype=cache.dtype).element_size()


@pytest.fixture
def census(monkeypatch):
    c = Census()
    original_groups = sampler.row_groups
    lean_store = LeanKVCache._store_and_read
    chunk_store = ChunkKVCache._store_and_read
    rows_callback = RowGroupsCache.callback

    def row_groups(*args, **kwargs):
        c.groups = []
        groups = original_groups(*args, **kwargs)
        c.groups = groups
        return groups

    def lean(self, slot, scale_index, k_new, v_new):
        if not c.mine(self):
            return lean_store(self, slot, scale_index, k_new, v_new)
        layer = self.slots.index(slot)
        plan = c.plan_of(self)
        stored = any(layer in plan.layer_sets[j] for j in range(scale_index + 1,
                                                                 plan.num_scales))
        unstored = 0 if stored else new_bytes(self, k_new)
        c.record(unstored)
        before = [t for t in (slot.k, slot.v) if t is not None]
        out = lean_store(self, slot, scale_index, k_new, v_new)
        c.record()
        # what the returned read refers to: the released buffer at the layer's last use, else
        # the buffer now in the slot (after a growth the smaller one is gone)
        read = before if scale_index == slot.last else [slot.k, slot.v]
        c.after_group(read, unstored)
        return out

    def chunk(self, layer, k, k_new, v_new):
        if not c.mine(self):
            return chunk_store(self, layer, k, k_new, v_new)
        c.record(new_bytes(self, k_new))  # the new keys/values, stored or only attended to
        before = [t for kv in self.entries[layer].values() for t in kv]
        out = chunk_store(self, layer, k, k_new, v_new)
        c.record()
        c.after_group(before, 0 if k in self.entries[layer] else new_bytes(self, k_new))
        return out

    def together(self, layer, scale_index):
        inner = rows_callback(self, layer, scale_index)

        def store_and_read(k_BAlE, v_BAlE):
            c.in_pass = True
            try:
                return inner(k_BAlE, v_BAlE)
            finally:
                c.in_pass, c.pass_tensors, c.pass_bytes = False, [], 0

        return store_and_read

    class TorchWithGrowthProbe:
        """`torch` for kv_cache.py: the second buffer of a growth (empty_like) is recorded
        while the smaller buffer it replaces is still held."""

        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def empty_like(t, *args, **kwargs):
            v = torch.empty_like(t, *args, **kwargs)
            if t.device.type != "meta":
                c.record(extra=(t, v))
            return v

    monkeypatch.setattr(sampler, "row_groups", row_groups)
    monkeypatch.setattr(LeanKVCache, "_store_and_read", lean)
    monkeypatch.setattr(ChunkKVCache, "_store_and_read", chunk)
    monkeypatch.setattr(RowGroupsCache, "callback", together)
    monkeypatch.setattr(kv_cache, "torch", TorchWithGrowthProbe())
    return c


@pytest.mark.parametrize("spec, levers", [
    ("full", {}),
    ("d2", {}),  # the subnet layers grow their buffers after the bridge
    ("full", dict(cfg_stop=3)),
    ("full", dict(guide_plan="d2")),
    ("d2", dict(guide_plan="full", guide_class="same")),
    ("full", dict(prune=(0.5, 3))),
    # pruned late scales write few tokens: the peak is a growth (the bridge buffer and the full
    # buffer that replaces it, both held while the kept tokens are copied)
    ("d4", dict(prune=(0.25, 4))),
    ("d2", dict(prune=(0.25, 5), cfg=0.0)),
    ("d4", dict(kv_keep=(1, 1))),
    ("full", dict(cfg_stop=4, guide_plan="d2", prune=(0.5, 3), kv_keep=(1, 2))),
    ("d2", dict(cfg_stop=5, guide_plan="d4", guide_class="same", prune=(0.25, 2),
                kv_keep=(0, 2), dtype="bf16")),
])
def test_census_of_held_storages_equals_the_reported_peak(builtin, census, spec, levers):
    var = builtin
    result = run(var, B=2, plan=spec, **levers)
    assert (result.levers.is_neutral) == (not levers)
    assert census.samples > 0 and census.peak > 0
    assert census.peak == result.kv_peak_bytes
    assert census.held() == 0  # everything released after the run
    assert all(group.cache.live_bytes == 0 for group in census.groups)


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


# ------------------------------------------------------------------ cfg_stop frees the guiding rows
@pytest.mark.parametrize("cfg_stop", [3, 5])
def test_cfg_stop_frees_the_guiding_rows(builtin, census, cfg_stop):
    var = builtin
    K = var.num_scales
    held = {}  # scale -> bytes the guiding rows' cache holds when the scale starts

    def trace(event, k):
        if event == "scale":
            guide = census.groups[1].cache
            held[k] = sum(2 * s.k.nbytes for s in guide.slots if s.k is not None)

    settings = SamplingConfig(seed=3, cfg_stop=cfg_stop)
    result = generate(var, 2, LABELS[2], settings=settings, trace=trace)
    groups = census.groups
    assert result.levers.get("cfg_stop") == cfg_stop
    assert [g.rows.tolist() for g in groups] == [[1, 7], [var.num_classes] * 2]
    assert groups[1].plan.num_scales == cfg_stop  # the guiding plan is truncated
    assert sorted(held) == list(range(K))
    assert all(held[k] > 0 for k in range(cfg_stop))  # it held keys before cfg_stop...
    assert all(held[k] == 0 for k in range(cfg_stop, K))  # ...and nothing from cfg_stop on
    assert groups[0].cache.meter is groups[1].cache.meter
    assert groups[0].cache.live_bytes == 0 and census.peak == result.kv_peak_bytes
    plain = run(var, B=2)
    # By hand, in token-layers of one row (128 channels x 2 x 4 B = 1024 B), full plan, B = 2:
    # plain: 4 rows x (layer 0 at the last scale: 66 kept + 64 new; layers 1-7: 66) = 4 x 592.
    # The conditional rows preallocate 8 x 66 = 528; the guiding rows 8 x (tokens of scales
    # 0..cfg_stop-2). cfg_stop=3: guiding peak at scale 2: 528 + 8 x 5 + 9 = 577 < 592, the
    # conditional rows' own peak at scale 5 -> 2 x 592, half the plain peak. cfg_stop=5: at
    # scale 4 the guiding layer 0 attends to its 30 kept and 36 new tokens: 528 + 8 x 30 + 36.
    assert plain.kv_peak_bytes == 4 * 592 * 1024
    assert result.kv_peak_bytes == 2 * {3: 592, 5: 528 + 8 * 30 + 36}[cfg_stop] * 1024
    assert result.kv_peak_bytes < plain.kv_peak_bytes


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


def test_pruning_runs_the_kept_positions_and_sizes_the_caches(builtin, census, monkeypatch):
    var = builtin
    seen = []
    run_layers = type(var).run_layers

    def spy(self, scale_index, x_RlD, ctx, layers, cache):
        seen.append((scale_index, x_RlD.shape[0], x_RlD.shape[1]))
        return run_layers(self, scale_index, x_RlD, ctx, layers, cache)

    monkeypatch.setattr(type(var), "run_layers", spy)
    result = run(var, B=2, prune=(0.5, 4))
    # scales 4 and 5 (36 and 64 positions) run 18 and 32; every position still gets a token
    assert sorted({(k, n) for k, _, n in seen}) == [(0, 1), (1, 4), (2, 9), (3, 16), (4, 18),
                                                   (5, 32)]
    assert [i.shape for i in result.indices] == [(2, p * p) for p in var.patch_nums]
    assert [group.cache.sizes for group in census.groups] == [[1, 4, 9, 16, 18, 32]] * 2


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


# ------------------------------------------------------------------ multi-part attention
def reference_attention(q, k, v, scale):
    return ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v


@pytest.mark.parametrize("path", ["cpu_flash", "flex", "math", "math-per-row"])
@pytest.mark.parametrize("splits", [(12,), (5, 7), (1, 4, 7)])
def test_multi_part_attention_equals_softmax_over_the_concatenation(path, splits):
    g = torch.Generator().manual_seed(sum(splits) + len(splits))
    B, A, n, E = 3, 2, 5, 8
    q = torch.randn(B, A, n, E, generator=g)
    k = torch.randn(B, A, sum(splits), E, generator=g) * 2
    v = torch.randn(B, A, sum(splits), E, generator=g)
    parts = []
    for kk, vv in zip(k.split(splits, 2), v.split(splits, 2)):
        parts += [kk, vv]
    keys = Attendable(*parts)
    assert keys.num_parts == len(splits)
    limit = attention.MAX_SCORE_BYTES
    if path == "math-per-row":
        limit = A * n * sum(splits) * 4  # one row's score matrix: chunks of one row
    scale = 1 / math.sqrt(E)
    out = multi_part_attention(q, keys, scale, route=path.split("-")[0], max_score_bytes=limit)
    assert out.shape == (B, A, n, E) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_attention(q, k, v, scale))


def test_attendable_takes_pairs():
    with pytest.raises(ValueError, match="pairs"):
        Attendable(torch.zeros(1), torch.zeros(1), torch.zeros(1))


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
    import variant
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
