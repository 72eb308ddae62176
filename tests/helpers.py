"""Helpers shared by several test modules."""

import torch

from variant.models.plan import DepthPlan
from variant.models.var import VAR
from variant.sampling.kv_cache import LeanKVCache


def cached_logits(var: VAR, label_B, x_BLCv, plan: DepthPlan, dtype=torch.float32):
    """Run the KV-cached path scale by scale on teacher tokens; returns logits (B, L, V)."""
    x_BLD, cond_BD = var.embed_inputs(label_B, x_BLCv)
    cond = var.shared_ada_lin(cond_BD)
    cache = LeanKVCache(plan, var.patch_nums, var.depth, x_BLD.shape[0], var.config.heads,
                        var.config.head_dim, dtype, x_BLD.device)
    out = []
    for k, (a, b) in enumerate(var.begin_ends):
        x = x_BLD[:, a:b]
        for layer in plan.layers_at(k):
            x = var.blocks[layer](x, cond, kv=cache.callback(layer, k))
        out.append(var.get_logits(x, cond_BD))
    cache.release_all()
    assert cache.live_bytes == 0
    return torch.cat(out, 1), cache
