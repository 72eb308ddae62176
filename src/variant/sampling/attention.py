"""What a layer attends to when it reads the KV cache, and attention over a two-part read.

A cache callback (`KVCallback`) receives one scale's keys/values, stores what the plan says to
keep, and returns an `Attendable`: one contiguous part, or the kept part plus the new part at a
layer's last scale (the lean cache never assembles a full-length copy). This module belongs to
the sampling engine: any model family whose attention reads the cache uses it.

Shape legend (the package's, see variant/__init__.py): B batch (the rows of a transformer pass),
A attention heads, L tokens held, l tokens of one scale, E head dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Keys/values visible to a query block: (k_BALE, v_BALE). A cache callback stores this scale's
# keys/values and returns what the queries may attend to.
KVCallback = Callable[[torch.Tensor, torch.Tensor], "Attendable"]

# The unfused two-part attention chunks the batch so one float32 score matrix stays under this.
MAX_SCORE_BYTES = 1 << 28


class Attendable:
    """Keys/values for one attention call: one contiguous part, or kept part + new part.

    The two-part form lets a layer at its last scale attend to its cached tokens and the new
    scale without concatenating them (the lean cache never assembles a full-length copy).
    """

    def __init__(self, k_BALE, v_BALE, k_new_BAlE=None, v_new_BAlE=None):
        self.k, self.v, self.k_new, self.v_new = k_BALE, v_BALE, k_new_BAlE, v_new_BAlE


def two_part_attention(q_BAlE, part: Attendable, scale: float,
                       max_score_bytes: int = MAX_SCORE_BYTES):
    """Softmax attention over [part.k ; part.k_new] without concatenating them.

    On CPU: one fused (flash) attention per part, merged by their log-sum-exps. Elsewhere:
    computed in float32 and chunked over the batch so the score matrix stays under
    `max_score_bytes`. Returns (B, A, l, E) in the values' dtype.
    """
    if q_BAlE.device.type == "cpu" and _CPU_FLASH_WITH_LSE is not None:
        return _merged_attention_cpu(q_BAlE, part, scale)
    B, A, num_q, _ = q_BAlE.shape
    n = part.k.shape[2] + part.k_new.shape[2]
    step = max(1, max_score_bytes // max(1, A * num_q * n * 4))
    outs = []
    for b in range(0, B, step):
        q = q_BAlE[b:b + step].float() * scale
        s1 = q @ part.k[b:b + step].float().transpose(-2, -1)
        s2 = q @ part.k_new[b:b + step].float().transpose(-2, -1)
        m = torch.maximum(s1.amax(-1, keepdim=True), s2.amax(-1, keepdim=True))
        e1, e2 = (s1 - m).exp_(), (s2 - m).exp_()
        z = e1.sum(-1, keepdim=True) + e2.sum(-1, keepdim=True)
        o = e1 @ part.v[b:b + step].float() + e2 @ part.v_new[b:b + step].float()
        outs.append(o.div_(z))
    return torch.cat(outs).to(part.v.dtype) if len(outs) > 1 else outs[0].to(part.v.dtype)


# PyTorch's fused CPU attention that also returns the log-sum-exp (present in every torch this
# package supports, >= 2.6); on other devices the chunked float32 path above is used.
_CPU_FLASH_WITH_LSE = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _merged_attention_cpu(q_BAlE, part: Attendable, scale: float):
    """softmax([s1, s2]) @ [v1; v2] = w1 * o1 + w2 * o2, w_i = exp(lse_i - logaddexp(lse))."""
    flash = _CPU_FLASH_WITH_LSE
    dtype = part.v.dtype
    o1, lse1 = flash(q_BAlE.to(dtype), part.k, part.v, scale=scale)[:2]
    o2, lse2 = flash(q_BAlE.to(dtype), part.k_new, part.v_new, scale=scale)[:2]
    lse = torch.logaddexp(lse1, lse2)  # (B, A, l) float32
    w1 = (lse1 - lse).exp_().unsqueeze(-1)
    w2 = (lse2 - lse).exp_().unsqueeze(-1)
    return (o1.float() * w1 + o2.float() * w2).to(dtype)
