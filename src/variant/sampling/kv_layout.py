"""Where a layer's kept keys/values go in the lean KV cache (sampling/kv_cache.py).

A layer keeps the scales that run it, but its last (DESIGN invariant 3). Its kept scales form
segments, one per storage format in scale order (one, unless KV precision starts after the
layer's first kept scale: sampling/kv_quant.py); each segment is one store that grows in place:
first the part allocated at scale 0, then the whole kept bridge part, then everything it keeps
(late allocation), each growth one copy of what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kv_quant import KVStore


class LayerSlot:
    """Bookkeeping for one layer: its scales and its segments (the kept scales of each storage
    format, in scale order: one segment unless KV precision starts after the first)."""

    def __init__(self, scales: tuple[int, ...], sizes: Sequence[int], bridge: int,
                 grow_late: bool, formats: Sequence[str | None]):
        self.last = scales[-1] if scales else -1
        kept = scales[:-1]
        self.segments = [Segment([k for k in kept if formats[k] == fmt], sizes, bridge,
                                 grow_late, fmt)
                         for fmt in dict.fromkeys(formats[k] for k in kept)]
        self.segment_of = {k: seg for seg in self.segments for k in seg.offset}


class Segment:
    """Kept scales of one layer in one storage format: where each goes, the current store.

    Capacities in tokens, growing: `first` (allocated at scale 0), `bridge` (the whole kept
    bridge part), `capacity` (everything the segment keeps).
    """

    def __init__(self, kept: list[int], sizes: Sequence[int], bridge: int, grow_late: bool,
                 fmt: str | None):
        self.fmt = fmt
        self.offset = {}
        pos = 0
        for k in kept:
            self.offset[k] = pos
            pos += sizes[k]
        self.capacity = pos  # tokens kept in the end
        self.bridge = sum(sizes[k] for k in kept if k < bridge)
        late = sizes[bridge - 1] if grow_late and bridge - 1 in kept else 0
        self.first = self.bridge - late
        self.store: KVStore | None = None
        self.filled = 0

    def room_for(self, stop: int) -> int:
        """The capacity to allocate when `stop` tokens must fit."""
        return self.bridge if stop <= self.bridge else self.capacity
