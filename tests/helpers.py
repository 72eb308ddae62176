"""Helpers shared by several test modules."""

import torch

from variant.models.var import VAR
from variant.sampling.kv_cache import LeanKVCache
from variant.sampling.levers import Levers
from variant.sampling.plan import DepthPlan
from variant.sampling.sampler import RowGroup, scale_loop


def cached_logits(var: VAR, label_B, x_BLCv, plan: DepthPlan, dtype=torch.float32, *,
                  grow_late=None):
    """Run the sampler's scale loop with the KV cache on teacher inputs -> logits (B, L, V).

    The policy replays the teacher's tokenizer-side inputs `x_BLCv` (B, L - 1, C) instead of
    sampling, so this is the sampling path of `variant.sampling.sampler.scale_loop` itself.
    """
    sizes = [p * p for p in var.patch_nums]
    starts = [sum(sizes[:k]) - 1 for k in range(len(sizes))]  # offsets in x_BLCv (no scale 0)
    logits = []

    def teacher(k, logits_BlV):
        logits.append(logits_BlV)
        if k + 1 < len(sizes):
            return x_BLCv[:, starts[k + 1]:starts[k + 1] + sizes[k + 1]]
        return None

    num_heads, head_dim = var.kv_layout
    cache = LeanKVCache(plan, var.patch_nums, var.depth, x_BLCv.shape[0], num_heads, head_dim,
                        dtype, x_BLCv.device, grow_late=grow_late)
    levers = Levers.neutral(plan, var.num_scales)
    scale_loop(var, [RowGroup(label_B, plan, cache, var.num_scales)], teacher, levers)
    cache.release_all()
    assert cache.live_bytes == 0
    return torch.cat(logits, 1), cache
