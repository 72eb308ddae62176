"""An independent census of the key/value storages alive during sampling equals the reported
peak, for the plain sampler and every lever, through public behaviour only: the model is wrapped
as a `ScaleModel`, the caches it is given are wrapped as `KVCache`s (row groups run together are
rebuilt from their public parts), what a cache returns is read through `Attendable.parts` and
`RowSplit.groups`, and allocations are seen by a `TorchFunctionMode`. No meter is read and nothing
private is patched.

What counts (DESIGN invariant 3): every storage of keys or values (R, A, n, E) a cache creates
(before the first scale, or while it stores a scale's keys/values) for as long as it is alive, by
weak reference, and the new keys and values a layer attends to without storing them, while they
are read. Samples are taken at every such allocation (a growing buffer and the one it replaces
are both alive then) and after every store-and-read; in a pass over several row groups, what the
earlier groups read stays alive while the later ones store theirs. Because it counts storages
that are alive rather than what the caches say, it found that the chunked cache made each stored
key/value twice when the new ones were strided (a copy, then a contiguous copy of it): the
transient first copy was in no meter; the cache now makes one contiguous copy.

Under KV precision (sampling/kv_quant.py) the storages are the 8-bit payloads (R, A, n, E), their
float32 scales (R, A, n, 1), the float32 workspace of a quantisation and the dequantised copies a
layer reads (R, A, n, E): the census counts every fresh tensor of either shape.
"""

import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode

from variant.sampling.kv_cache import RowGroupsCache
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


class Census(TorchFunctionMode):
    def __init__(self, kv_layout: tuple[int, int]):
        super().__init__()
        self.kv_layout = kv_layout  # (heads, head dim): the last dims of keys and values
        self.started = False  # the first scale has started: caches now allocate only in a window
        self.window = 0  # inside a cache's store-and-read
        self.in_pass = False  # inside a pass over several row groups
        self.pass_bytes = 0  # unstored keys/values the earlier groups of the pass still read
        self.storages: dict[int, tuple[weakref.ref, int]] = {}  # data_ptr -> (tensor, bytes)
        self.caches: list = []
        self.peak = self.samples = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (self.window or not self.started) and self._fresh(out, args):
            self.storages[out.untyped_storage().data_ptr()] = (
                weakref.ref(out), out.untyped_storage().nbytes())
            self.sample()
        return out

    def _fresh(self, out, args) -> bool:
        """A new storage of keys or values (R, A, n, E), not a view of an input or a known one."""
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.device.type == "meta":
            return False
        if (out.shape[1], out.shape[3]) not in (self.kv_layout, (self.kv_layout[0], 1)):
            return False  # neither keys/values nor their scales
        ptr = out.untyped_storage().data_ptr()
        known = self.storages.get(ptr)
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        return ptr not in inputs and (known is None or known[0]() is None)

    def held(self) -> int:
        return sum(n for ref, n in self.storages.values() if ref() is not None)

    def sample(self, extra: int = 0) -> None:
        self.samples += 1
        self.peak = max(self.peak, self.held() + self.pass_bytes + extra)

    def unstored(self, read) -> int:
        """Bytes of the tensors a read refers to outside every cache storage."""
        blocks = [keys for _, keys in read.groups] if hasattr(read, "groups") else [read]
        return sum(t.numel() * t.element_size() for keys in blocks for part in keys.parts
                   for t in part if self.storages.get(t.untyped_storage().data_ptr(), (
                       lambda: None,))[0]() is None)


class Watched:
    """A cache as the model sees it; every store-and-read is observed by the census."""

    def __init__(self, cache, census: Census):
        self.cache, self.census = cache, census
        census.caches.append(cache)

    def __getattr__(self, name):  # peak_bytes, live_bytes, meter, release_all
        return getattr(self.cache, name)

    def callback(self, layer: int, scale_index: int):
        inner, census = self.cache.callback(layer, scale_index), self.census

        def store_and_read(k_new, v_new):
            census.window += 1
            try:
                read = inner(k_new, v_new)
            finally:
                census.window -= 1
            unstored = census.unstored(read)
            census.sample(unstored)
            if census.in_pass:
                census.pass_bytes += unstored
            return read

        return store_and_read


class Pass:
    """Several row groups' caches in one pass, rebuilt from the public parts of the pass."""

    def __init__(self, cache: RowGroupsCache, census: Census):
        self.census = census
        self.cache = RowGroupsCache([Watched(c, census) for c in cache.caches], cache.rows)

    def callback(self, layer: int, scale_index: int):
        inner, census = self.cache.callback(layer, scale_index), self.census

        def store_and_read(k_new, v_new):
            census.in_pass, census.pass_bytes = True, 0
            try:
                return inner(k_new, v_new)
            finally:
                census.in_pass, census.pass_bytes = False, 0

        return store_and_read


class CensusModel:
    """The model as a `ScaleModel` whose scale steps see watched caches."""

    def __init__(self, var, census: Census):
        self._var, self._census = var, census
        self.passes: list[tuple[int, int, int]] = []  # (scale, rows, tokens run) of each pass

    def __getattr__(self, name):
        return getattr(self._var, name)

    def start(self, label_R):
        self._census.started = True
        return self._var.start(label_R)

    def run_layers(self, scale_index, x_RlD, ctx, layers, cache):
        self.passes.append((scale_index, *x_RlD.shape[:2]))
        watched = (Pass(cache, self._census) if isinstance(cache, RowGroupsCache)
                   else Watched(cache, self._census))
        return self._var.run_layers(scale_index, x_RlD, ctx, layers, watched)


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
    # KV precision: payloads and scales, the quantisation workspace, the dequantised reads
    ("full", dict(kv_precision="int8")),
    ("d2", dict(kv_precision="fp8", dtype="bf16")),
    ("full", dict(kv_precision="int8@2")),  # two stores per layer: compute dtype, then int8
    ("d4", dict(kv_precision="int8@3", kv_keep=(1, 1))),
    ("full", dict(cfg_stop=4, guide_plan="d2", prune=(0.5, 3), kv_keep=(1, 2),
                  kv_precision="fp8@1")),
])
def test_census_of_held_storages_equals_the_reported_peak(builtin, spec, levers):
    census = Census(builtin.kv_layout)
    settings = SamplingConfig(seed=3, **levers)
    with census:
        result = generate(CensusModel(builtin, census), 2, [1, 7], settings=settings, plan=spec)
    assert result.levers.is_neutral == (not levers)
    assert census.samples > 0 and census.caches and census.peak > 0
    assert census.peak == result.kv_peak_bytes
    assert census.held() == 0  # every storage released after the run
    assert all(cache.live_bytes == 0 for cache in census.caches)


# ------------------------------------------------------------------ what the census sees
@pytest.mark.parametrize("cfg_stop", [3, 5])
def test_cfg_stop_frees_the_guiding_rows(builtin, cfg_stop):
    var, K = builtin, builtin.num_scales
    census = Census(var.kv_layout)
    model = CensusModel(var, census)
    settings = SamplingConfig(seed=3, cfg_stop=cfg_stop)
    with census:
        result = generate(model, 2, [1, 7], settings=settings)
    conditional, guiding = result.levers.groups
    assert (conditional.condition, guiding.condition) == ("own", "null") and guiding.guiding
    assert guiding.plan.num_scales == guiding.stop == cfg_stop  # the guiding plan is truncated
    # both groups run together (4 rows) before cfg_stop, the conditional rows alone after it
    assert sorted({(k, rows) for k, rows, _ in model.passes}) == [
        (k, 4 if k < cfg_stop else 2) for k in range(K)]
    assert len({id(cache.meter) for cache in census.caches}) == 1  # one meter for both groups
    assert census.peak == result.kv_peak_bytes and census.held() == 0
    plain = generate(var, 2, [1, 7], settings=SamplingConfig(seed=3))
    # By hand, in token-layers of one row (128 channels x 2 x 4 B = 1024 B), full plan, B = 2:
    # plain: 4 rows x (layer 0 at the last scale: 66 kept + 64 new; layers 1-7: 66) = 4 x 592.
    # The conditional rows preallocate 8 x 66 = 528; the guiding rows 8 x (tokens of scales
    # 0..cfg_stop-2). cfg_stop=3: guiding peak at scale 2: 528 + 8 x 5 + 9 = 577 < 592, the
    # conditional rows' own peak at scale 5 -> 2 x 592, half the plain peak. cfg_stop=5: at
    # scale 4 the guiding layer 0 attends to its 30 kept and 36 new tokens: 528 + 8 x 30 + 36.
    assert plain.kv_peak_bytes == 4 * 592 * 1024
    assert result.kv_peak_bytes == 2 * {3: 592, 5: 528 + 8 * 30 + 36}[cfg_stop] * 1024
    assert result.kv_peak_bytes < plain.kv_peak_bytes


def test_pruning_runs_the_kept_positions_and_sizes_the_caches(builtin):
    var = builtin
    census = Census(var.kv_layout)
    model = CensusModel(var, census)
    with census:
        result = generate(model, 2, [1, 7], settings=SamplingConfig(seed=3, prune=(0.5, 4)))
    # scales 4 and 5 (36 and 64 positions) run 18 and 32; every position still gets a token
    assert sorted({(k, n) for k, _, n in model.passes}) == [(0, 1), (1, 4), (2, 9), (3, 16),
                                                            (4, 18), (5, 32)]
    assert [i.shape for i in result.indices] == [(2, p * p) for p in var.patch_nums]
    sizes = {id(c): c.sizes for c in census.caches}
    assert list(sizes.values()) == [[1, 4, 9, 16, 18, 32]] * 2  # both row groups' caches
    assert census.peak == result.kv_peak_bytes
