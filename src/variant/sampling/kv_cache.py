"""The lean KV cache: per-layer buffers sized by the depth plan, filled in place, freed early.

Rules (DESIGN invariant 3):
- a layer keeps only the scales that run it, and never the K/V of its own last scale: at its
  last scale it attends to its kept tokens plus the new ones as two parts, then retires;
- a layer's bridge part lives in a small buffer allocated at the first scale; a layer that runs
  again after the bridge zone gets its full-size buffer only then (late allocation), with one
  copy of the bridge part, and the small buffer is freed;
- such a continuing layer may also leave the room for the last bridge scale out of its small
  buffer and grow it (one more small copy) when that scale arrives. Which layers do is decided
  by dry runs of this cache on the meta device (`_late_growth`), once per plan: a layer grows
  late when that does not raise the peak. This closes the gap between the measured peak and
  the lean bound (`DepthPlan.kv_peak_token_layers`) for plans whose peak is at the bridge end
  (e.g. d2 at D = 30, where room preallocated for layer 29's last bridge scale was counted
  while layer 1 ran);
- keys and values are stored in the compute dtype, laid out (B, A, L, E) so every read is a view;
  under KV precision (sampling/kv_quant.py) the scales from the lever's first one on are stored
  in 8 bits with their scales (earlier ones in a store of their own: sampling/kv_layout.py) and
  read back as transient compute-dtype copies (a scale's own new keys/values are attended to as
  computed).

`peak_bytes` is the largest total of key/value bytes alive at once: the buffers plus, at a
layer's last scale, the new keys/values that are attended to without being stored (and under KV
precision the scales, the quantisation workspace and the dequantised reads: kv_quant.py).
Shape legend (the package's, see variant/__init__.py): B batch (the rows of the pass, doubled by
guidance), A attention heads, L tokens held, E head dim, l tokens of one scale.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from .attention import Attendable, RowSplit
from .kv_layout import LayerSlot, Segment
from .kv_quant import KVStore, check_device

if TYPE_CHECKING:
    from .plan import DepthPlan


# Called by a block's attention with this scale's new keys and values (R, A, l, E): stores what
# later scales read and returns everything the layer attends to at this scale.
StoreAndRead = Callable[[torch.Tensor, torch.Tensor], "Attendable | RowSplit"]


@runtime_checkable
class KVCache(Protocol):
    """What the scale loop and a model's `run_layers` need from a KV cache (the lean cache, the
    chunked cache of KV retention, and several row groups' caches behind one pass)."""

    def callback(self, layer: int, scale_index: int) -> StoreAndRead:
        """The store-and-read function of `layer` at scale k (it runs there)."""
        ...

    def release_all(self) -> None:
        """Free every buffer (after the last scale)."""
        ...

    @property
    def peak_bytes(self) -> int:
        """The largest key/value bytes alive at once, counted by the shared `KVMeter`."""
        ...


class KVMeter:
    """Key/value bytes alive now and at most, shared by the caches of one sampling call (the
    conditional and the guiding rows' caches count together)."""

    def __init__(self):
        self.live_bytes = 0
        self.peak_bytes = 0
        self._held: list[int] | None = None  # releases deferred while a shared pass reads

    def add(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def sub(self, nbytes: int) -> None:
        """Release bytes whose tensors the current read may still hold (deferred in a pass)."""
        if self._held is not None:
            self._held.append(nbytes)
        else:
            self.live_bytes -= nbytes

    def free_now(self, nbytes: int) -> None:
        """Release bytes nothing refers to any more (a buffer replaced by a larger one)."""
        self.live_bytes -= nbytes

    @contextlib.contextmanager
    def together(self):
        """Releases inside wait until the end: the row groups of one pass attend at the same
        time, so what each group reads (its parts and its unstored new keys/values) is alive
        together."""
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for nbytes in held:
                self.live_bytes -= nbytes


class _CacheBase:
    """What both caches share: the tokens each scale writes, the row/head layout and dtype, the
    bytes of one token-layer, and the meter that counts them."""

    def __init__(self, plan: DepthPlan, patch_nums: Sequence[int], depth: int, batch: int,
                 num_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 sizes: Sequence[int] | None, meter: KVMeter | None,
                 formats: Sequence[str | None] | None = None):
        plan.check(depth, len(patch_nums))
        self.sizes = [p * p for p in patch_nums] if sizes is None else [int(n) for n in sizes]
        # the storage format of each scale's keys/values (None: the compute dtype)
        self.formats = [None] * len(patch_nums) if formats is None else list(formats)
        if not len(self.sizes) == len(self.formats) == len(patch_nums):
            raise ValueError(f"give one size and one format per scale ({len(patch_nums)}), got "
                             f"{len(self.sizes)} and {len(self.formats)}.")
        for fmt in set(self.formats) - {None}:  # before any work: refuse what the device lacks
            check_device(fmt, torch.device(device).type)
        self.shape = (batch, num_heads, head_dim)
        self.dtype, self.device = dtype, torch.device(device)
        one = torch.empty(batch, num_heads, 1, head_dim, dtype=dtype, device="meta")
        self.bytes_per_token = 2 * one.nbytes  # one token of one layer: its key and its value
        self.meter = meter or KVMeter()

    @property
    def live_bytes(self) -> int:
        return self.meter.live_bytes

    @property
    def peak_bytes(self) -> int:
        return self.meter.peak_bytes


class LeanKVCache(_CacheBase):
    def __init__(self, plan: DepthPlan, patch_nums: Sequence[int], depth: int, batch: int,
                 num_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 *, grow_late: frozenset[int] | None = None, sizes: Sequence[int] | None = None,
                 meter: KVMeter | None = None, formats: Sequence[str | None] | None = None):
        """`grow_late`: layers that leave their last bridge scale's room out of the first
        buffer (default: the choice of `_late_growth` for this plan, by token counts).
        `sizes`: tokens each scale writes (default p * p; fewer under token pruning). `meter`:
        shared with other caches of the same call (default: its own). `formats`: each scale's
        storage format (default: all in the compute dtype; kv_quant.py)."""
        super().__init__(plan, patch_nums, depth, batch, num_heads, head_dim, dtype, device,
                         sizes, meter, formats)
        if grow_late is None:
            grow_late = _late_growth(plan, tuple(self.sizes), depth)
        bridge = plan.bridge_for(depth)
        self.slots = [LayerSlot(plan.scales_of_layer(i), self.sizes, bridge, i in grow_late,
                                 self.formats) for i in range(depth)]
        # The first buffers exist from the start, for every layer that keeps bridge tokens.
        for segment in (seg for slot in self.slots for seg in slot.segments):
            if segment.first:
                self._allocate(segment, segment.first)

    @classmethod
    def _dry_run(cls, plan: DepthPlan, patch_nums: Sequence[int], depth: int, *,
                grow_late: frozenset[int] | None = None,
                sizes: Sequence[int] | None = None) -> LeanKVCache:
        """The cache's own bookkeeping for every (scale, layer) of `plan` on the meta device,
        for choosing its layout (`_late_growth`); the KV prediction of a sampling call is the
        sampler's whole loop on the meta device (`sampler.predict_kv_peak_bytes`).

        One row, one head, head dim 1, fp32: `token_layers_peak` is the measured peak in
        token-layers, which the bytes of any batch, width and dtype scale linearly.
        """
        cache = cls(plan, patch_nums, depth, 1, 1, 1, torch.float32, "meta",
                    grow_late=grow_late, sizes=sizes)
        for k, layers in enumerate(plan.layer_sets):
            new = torch.empty(1, 1, cache.sizes[k], 1, device="meta")
            for layer in layers:
                cache.callback(layer, k)(new, new)
        cache.release_all()
        return cache

    # ------------------------------------------------------------------ memory
    def _allocate(self, segment: Segment, tokens: int) -> None:
        store = KVStore(segment.fmt, self.shape, tokens, self.dtype, self.device)
        self.meter.add(store.nbytes)
        if segment.store is not None:  # growth: move what is kept, free the smaller buffer
            store.copy_from(segment.store, segment.filled)
            self.meter.free_now(segment.store.nbytes)
        segment.store = store

    def _release(self, slot: LayerSlot, plain: bool = True) -> None:
        """Free the layer's quantised stores (at once: reads of them are copies) and, with
        `plain`, its compute-dtype ones (what the current read views stays counted)."""
        for segment in slot.segments:
            if segment.store is not None and segment.fmt is not None:
                self.meter.free_now(segment.store.nbytes)
            elif segment.store is not None and plain:
                self.meter.sub(segment.store.nbytes)
            else:
                continue
            segment.store = None

    # ------------------------------------------------------------------ per layer, per scale
    def callback(self, layer: int, scale_index: int):
        """The function a block's attention calls with this scale's (k, v) (B, A, l, E)."""
        slot = self.slots[layer]

        def store_and_read(k_BAlE: torch.Tensor, v_BAlE: torch.Tensor) -> Attendable:
            return self._store_and_read(slot, scale_index, k_BAlE, v_BAlE)

        return store_and_read

    def _store_and_read(self, slot: LayerSlot, scale_index: int, k_new, v_new) -> Attendable:
        _check_written(k_new, self.sizes, scale_index)
        if scale_index == slot.last:  # last use: attend to kept + new, keep nothing
            parts, transient = self._read(slot, {})
            self._release(slot, plain=False)
            self.meter.add(k_new.nbytes + v_new.nbytes)
            self.meter.sub(k_new.nbytes + v_new.nbytes + transient)
            self._release(slot)  # the returned views keep the memory until attention is done
            return Attendable(*parts, k_new.to(self.dtype), v_new.to(self.dtype))
        segment = slot.segment_of[scale_index]
        start = segment.offset[scale_index]
        stop = start + k_new.shape[2]
        if segment.store is None or segment.store.k.shape[2] < stop:
            self._allocate(segment, segment.room_for(stop))
        segment.store.write(start, k_new, v_new, self.meter)
        if segment.fmt is None:  # read back with the rest: one part in the plain cache
            segment.filled = stop
            parts, transient = self._read(slot, {})
        else:  # the kept part dequantised, the new keys/values as computed
            parts, transient = self._read(slot, {id(segment): start})
            segment.filled = stop
            self.meter.add(k_new.nbytes + v_new.nbytes)
            transient += k_new.nbytes + v_new.nbytes
            parts += [k_new.to(self.dtype), v_new.to(self.dtype)]
        self.meter.sub(transient)
        return Attendable(*parts)

    def _read(self, slot: LayerSlot, upto: dict[int, int]) -> tuple[list, int]:
        """What the layer's segments hold (segment -> tokens: `upto`, else all it has), in the
        compute dtype, and the bytes of the transient copies among them."""
        parts, transient = [], 0
        for segment in slot.segments:
            n = upto.get(id(segment), segment.filled)
            if n:
                parts += segment.store.read(n, self.meter)
                transient += segment.store.transient_bytes(n)
        return parts, transient

    def release_all(self) -> None:
        for slot in self.slots:
            self._release(slot)

    @property
    def token_layers_peak(self) -> float:
        return self.peak_bytes / self.bytes_per_token


class ChunkKVCache(_CacheBase):
    """The cache under KV retention (`kv_keep`): one buffer per (layer, scale), freed early.

    A layer stores scale s's keys/values only if a later scale that runs the layer may read s
    (`visible(s, k)`), and frees them right after its last such reader has attended. Reads
    return the visible scales as separate parts (`Attendable`), attended to as one softmax, so
    dropping a middle scale never copies the others. Same counting as `LeanKVCache`: at a
    scale whose keys/values are not stored, the new ones count while they are attended to.
    """

    def __init__(self, plan: DepthPlan, patch_nums: Sequence[int], depth: int, batch: int,
                 num_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 *, visible, sizes: Sequence[int] | None = None, meter: KVMeter | None = None,
                 formats: Sequence[str | None] | None = None):
        super().__init__(plan, patch_nums, depth, batch, num_heads, head_dim, dtype, device,
                         sizes, meter, formats)
        # readers[layer][s]: the later scales running `layer` that read scale s
        self.readers: list[dict[int, list[int]]] = []
        for layer in range(depth):
            own = plan.scales_of_layer(layer)
            self.readers.append({s: [k for k in own if k > s and visible(s, k)] for s in own})
        self.visible = visible
        self.entries: list[dict[int, KVStore]] = [{} for _ in range(depth)]

    def callback(self, layer: int, scale_index: int):
        def store_and_read(k_BAlE: torch.Tensor, v_BAlE: torch.Tensor) -> Attendable:
            return self._store_and_read(layer, scale_index, k_BAlE, v_BAlE)

        return store_and_read

    def _store_and_read(self, layer: int, k: int, k_new, v_new) -> Attendable:
        _check_written(k_new, self.sizes, k)
        entries = self.entries[layer]
        readable = [s for s in sorted(entries) if self.visible(s, k)]
        if self.readers[layer][k]:  # a later scale reads it: store it
            # one contiguous store each (a strided copy made contiguous would be two, the first
            # a transient key/value buffer no meter counts)
            entries[k] = KVStore(self.formats[k], self.shape, k_new.shape[2], self.dtype,
                                 self.device)
            self.meter.add(entries[k].nbytes)
            entries[k].write(0, k_new, v_new, self.meter)
        parts, transient = [], 0
        done = [s for s in entries if self.readers[layer][s] and self.readers[layer][s][-1] <= k]
        for s in readable:
            parts += entries[s].read(self.sizes[s], self.meter)
            transient += entries[s].transient_bytes(self.sizes[s])
            if s in done and entries[s].fmt is not None:  # read as a copy: free it at once
                self.meter.free_now(entries.pop(s).nbytes)
        if k in entries and entries[k].fmt is None:  # its stored copy is what is read
            parts += entries[k].read(self.sizes[k], self.meter)
        else:  # attended to now as computed (never stored, or stored quantised)
            nbytes = k_new.shape[2] * self.bytes_per_token
            self.meter.add(nbytes)
            transient += nbytes
            parts += [k_new.to(self.dtype), v_new.to(self.dtype)]
        self.meter.sub(transient)
        for s in [s for s in done if s in entries]:
            # its last reader is this scale: the parts above keep it for now
            self.meter.sub(entries.pop(s).nbytes)
        return Attendable(*parts)

    def release_all(self) -> None:
        for entries in self.entries:
            for s in list(entries):
                self.meter.sub(entries.pop(s).nbytes)


class RowGroupsCache:
    """Several row groups' caches behind one callback, for a pass that runs them together:
    each group's rows (consecutive, in order) store into and read from their own cache. The
    caches share one meter, which counts what all groups read at once (`KVMeter.together`)."""

    def __init__(self, caches: Sequence[KVCache], rows: Sequence[int]):
        self.caches, self.rows = list(caches), [int(r) for r in rows]

    def release_all(self) -> None:
        for cache in self.caches:
            cache.release_all()

    @property
    def peak_bytes(self) -> int:
        return self.caches[0].peak_bytes

    def callback(self, layer: int, scale_index: int):
        callbacks = [c.callback(layer, scale_index) for c in self.caches]

        def store_and_read(k_BAlE: torch.Tensor, v_BAlE: torch.Tensor) -> RowSplit:
            groups, start = [], 0
            with self.caches[0].meter.together():
                for callback, rows in zip(callbacks, self.rows):
                    stop = start + rows
                    groups.append((rows, callback(k_BAlE[start:stop], v_BAlE[start:stop])))
                    start = stop
            return RowSplit(groups)

        return store_and_read


def _check_written(k_new: torch.Tensor, sizes: Sequence[int], scale_index: int) -> None:
    """The cache's offsets come from the tokens each scale writes: refuse any other count
    rather than leave slots uninitialised."""
    if k_new.shape[2] != sizes[scale_index]:
        raise ValueError(f"scale {scale_index} wrote {k_new.shape[2]} tokens but the cache was "
                         f"sized for {sizes[scale_index]}; build the cache with the sizes the "
                         "sampler writes (sizes=levers.sizes(patch_nums) under pruning).")


@functools.lru_cache(maxsize=128)
def _late_growth(plan: DepthPlan, sizes: tuple[int, ...], depth: int) -> frozenset[int]:
    """Layers that should grow into their last bridge scale only when it arrives.

    Candidates are the layers that run again after the bridge zone (the others keep nothing of
    the last bridge scale). Preallocated room costs memory until the layer reaches that scale;
    growing costs one transient copy at that moment. Walking the candidates from the deepest
    (which reach the scale last, when most layers of the zone have retired), a layer grows late
    if a dry run's peak does not rise. Plans are frozen and hashable, so this runs once per plan.
    """
    bridge = plan.bridge_for(depth)
    if not 0 < bridge < plan.num_scales:
        return frozenset()
    chosen: frozenset[int] = frozenset()
    patch_nums = [1] * len(sizes)  # only the sizes matter
    best = LeanKVCache._dry_run(plan, patch_nums, depth, grow_late=chosen, sizes=sizes).peak_bytes
    for layer in reversed(range(depth)):
        scales = plan.scales_of_layer(layer)
        if not scales or scales[-1] < bridge:
            continue
        trial = chosen | {layer}
        peak = LeanKVCache._dry_run(plan, patch_nums, depth, grow_late=trial,
                                   sizes=sizes).peak_bytes
        if peak <= best:
            chosen, best = trial, peak
    return chosen
