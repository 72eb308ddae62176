"""The lean KV cache: per-layer buffers sized by the depth plan, filled in place, freed early.

Rules (DESIGN invariant 3):
- a layer keeps only the scales that run it, and never the K/V of its own last scale: at its
  last scale it attends to its kept tokens plus the new ones as two parts, then retires;
- the bridge part of a layer lives in a small buffer allocated at the first scale; a layer that
  runs again after the bridge zone gets its full-size buffer only then (late allocation), with
  one copy of the bridge part, and the small buffer is freed;
- K and V are stored in the compute dtype, laid out (B, H, T, K) so every read is a view.

`peak_bytes` is the largest total of key/value bytes alive at once: the buffers plus, at a
layer's last scale, the new keys/values that are attended to without being stored.
Legend: B batch (CFG-doubled), H heads, T tokens held, K head dim, l tokens of one scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .attention import Attendable

if TYPE_CHECKING:
    from ..models.plan import DepthPlan


class _LayerSlot:
    """Bookkeeping for one layer: its scales, where each kept scale goes, its current buffer."""

    def __init__(self, scales: tuple[int, ...], sizes: Sequence[int], bridge: int):
        self.scales = scales
        self.last = scales[-1] if scales else -1
        kept = scales[:-1]
        self.offset = {}
        pos = 0
        for k in kept:
            self.offset[k] = pos
            pos += sizes[k]
        self.capacity = pos  # tokens kept in the end
        self.bridge_capacity = sum(sizes[k] for k in kept if k < bridge)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.filled = 0


class LeanKVCache:
    def __init__(self, plan: DepthPlan, patch_nums: Sequence[int], depth: int, batch: int,
                 num_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        plan.check(depth, len(patch_nums))
        self.sizes = [p * p for p in patch_nums]
        self.shape = (batch, num_heads, head_dim)
        self.dtype, self.device = dtype, torch.device(device)
        self.bytes_per_token = batch * num_heads * head_dim * torch.empty(
            (), dtype=dtype).element_size() * 2  # keys and values
        bridge = plan.bridge_for(depth)
        self.slots = [_LayerSlot(plan.scales_of_layer(i), self.sizes, bridge)
                      for i in range(depth)]
        self.live_bytes = 0
        self.peak_bytes = 0
        # Bridge buffers exist from the start, for every layer that keeps bridge tokens.
        for slot in self.slots:
            if slot.bridge_capacity:
                self._allocate(slot, slot.bridge_capacity)

    # ------------------------------------------------------------------ memory
    def _allocate(self, slot: _LayerSlot, tokens: int) -> None:
        B, H, K = self.shape
        k = torch.empty(B, H, tokens, K, dtype=self.dtype, device=self.device)
        v = torch.empty_like(k)
        self._count(2 * k.nbytes)
        if slot.k is not None:  # late allocation: move the bridge part, free the small buffer
            k[:, :, :slot.filled].copy_(slot.k[:, :, :slot.filled])
            v[:, :, :slot.filled].copy_(slot.v[:, :, :slot.filled])
            self.live_bytes -= 2 * slot.k.nbytes
        slot.k, slot.v = k, v

    def _release(self, slot: _LayerSlot) -> None:
        if slot.k is not None:
            self.live_bytes -= 2 * slot.k.nbytes
        slot.k = slot.v = None

    def _count(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    # ------------------------------------------------------------------ per layer, per scale
    def callback(self, layer: int, scale_index: int):
        """The function a block's attention calls with this scale's (k, v) (B, H, l, K)."""
        slot = self.slots[layer]

        def store_and_read(k_BHlK: torch.Tensor, v_BHlK: torch.Tensor) -> Attendable:
            return self._store_and_read(slot, scale_index, k_BHlK, v_BHlK)

        return store_and_read

    def _store_and_read(self, slot: _LayerSlot, scale_index: int, k_new, v_new) -> Attendable:
        if scale_index == slot.last:  # last use: attend to kept + new, keep nothing
            self._count(k_new.nbytes + v_new.nbytes)
            self.live_bytes -= k_new.nbytes + v_new.nbytes
            if slot.filled == 0:
                self._release(slot)
                return Attendable(k_new.to(self.dtype), v_new.to(self.dtype))
            keys = Attendable(slot.k[:, :, :slot.filled], slot.v[:, :, :slot.filled],
                              k_new.to(self.dtype), v_new.to(self.dtype))
            self._release(slot)  # the returned views keep the memory until attention is done
            return keys
        start = slot.offset[scale_index]
        stop = start + k_new.shape[2]
        if slot.k is None or slot.k.shape[2] < stop:
            self._allocate(slot, slot.capacity)
        slot.k[:, :, start:stop].copy_(k_new)
        slot.v[:, :, start:stop].copy_(v_new)
        slot.filled = stop
        return Attendable(slot.k[:, :, :stop], slot.v[:, :, :stop])

    def release_all(self) -> None:
        for slot in self.slots:
            self._release(slot)

    @property
    def token_layers_peak(self) -> float:
        return self.peak_bytes / self.bytes_per_token

