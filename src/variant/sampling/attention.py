"""What a layer attends to when it reads the KV cache, and attention over a read in parts.

A cache callback (`KVCallback`) receives one scale's keys/values, stores what the plan says to
keep, and returns an `Attendable`: one contiguous part, or several parts (the kept part plus the
new part at a layer's last scale; the retained scales under `kv_keep`), never assembled into a
full-length copy. This module belongs to the sampling engine: any model family whose attention
reads the cache uses it.

Shape legend (the package's, see variant/__init__.py): B batch (the rows of a transformer pass),
A attention heads, L tokens held, l tokens of one scale, E head dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Keys/values visible to a query block: (k_BALE, v_BALE). A cache callback stores this scale's
# keys/values and returns what the queries may attend to.
KVCallback = Callable[[torch.Tensor, torch.Tensor], "Attendable"]

# The unfused multi-part attention chunks the batch so one float32 score matrix stays under this.
MAX_SCORE_BYTES = 1 << 28


class Attendable:
    """Keys/values for one attention call: one contiguous part, or several parts.

    `Attendable(k, v)` is one part; `Attendable(k1, v1, k2, v2, ...)` several, attended to as
    one softmax without concatenating them: the lean cache's kept part plus the new part at a
    layer's last scale, or the retained scales of the chunked cache (`kv_keep`).
    """

    def __init__(self, k_BALE, v_BALE, *more):
        if len(more) % 2:
            raise ValueError("Attendable takes keys and values in pairs: k1, v1, k2, v2, ...")
        self.parts = [(k_BALE, v_BALE)] + list(zip(more[::2], more[1::2]))

    @property
    def k(self) -> torch.Tensor:
        return self.parts[0][0]

    @property
    def v(self) -> torch.Tensor:
        return self.parts[0][1]

    @property
    def num_parts(self) -> int:
        return len(self.parts)


class RowSplit:
    """Keys/values of several row groups run in one pass (the conditional and guiding rows
    under levers): consecutive blocks of rows, each with its own `Attendable`."""

    def __init__(self, groups: list[tuple[int, Attendable]]):
        self.groups = groups  # (rows, what those rows attend to), in row order

    def attend(self, q_BAlE, attend_one):
        """`attend_one(q, keys)` on each block of rows, concatenated -> (B, A, l, E)."""
        outs, start = [], 0
        for rows, keys in self.groups:
            outs.append(attend_one(q_BAlE[start:start + rows], keys))
            start += rows
        return torch.cat(outs)


def multi_part_attention(q_BAlE, keys: Attendable, scale: float,
                         max_score_bytes: int = MAX_SCORE_BYTES):
    """Softmax attention over the concatenation of `keys.parts` without concatenating them.

    On CPU: one fused (flash) attention per part, merged by their log-sum-exps. Elsewhere:
    computed in float32 and chunked over the batch so the score matrix stays under
    `max_score_bytes`. Returns (B, A, l, E) in the values' dtype. With two parts the arithmetic
    is exactly the former two-part attention's (same operations in the same order).
    """
    if q_BAlE.device.type == "cpu" and _CPU_FLASH_WITH_LSE is not None:
        return _merged_attention_cpu(q_BAlE, keys, scale)
    B, A, num_q, _ = q_BAlE.shape
    n = sum(k.shape[2] for k, _ in keys.parts)
    step = max(1, max_score_bytes // max(1, A * num_q * n * 4))
    dtype = keys.v.dtype
    outs = []
    for b in range(0, B, step):
        q = q_BAlE[b:b + step].float() * scale
        scores = [q @ k[b:b + step].float().transpose(-2, -1) for k, _ in keys.parts]
        m = scores[0].amax(-1, keepdim=True)
        for s in scores[1:]:
            m = torch.maximum(m, s.amax(-1, keepdim=True))
        exps = [(s - m).exp_() for s in scores]
        z = exps[0].sum(-1, keepdim=True)
        o = exps[0] @ keys.parts[0][1][b:b + step].float()
        for e, (_, v) in zip(exps[1:], keys.parts[1:]):
            z = z + e.sum(-1, keepdim=True)
            o = o + e @ v[b:b + step].float()
        outs.append(o.div_(z))
    return torch.cat(outs).to(dtype) if len(outs) > 1 else outs[0].to(dtype)


# PyTorch's fused CPU attention that also returns the log-sum-exp (present in every torch this
# package supports, >= 2.6); on other devices the chunked float32 path above is used.
_CPU_FLASH_WITH_LSE = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _merged_attention_cpu(q_BAlE, keys: Attendable, scale: float):
    """softmax([s1, s2, ...]) @ [v1; v2; ...] = sum_i w_i * o_i, w_i = exp(lse_i - lse)."""
    flash = _CPU_FLASH_WITH_LSE
    dtype = keys.v.dtype
    q = q_BAlE.to(dtype)
    outs, lses = [], []
    for k, v in keys.parts:
        o, lse_i = flash(q, k, v, scale=scale)[:2]
        outs.append(o)
        lses.append(lse_i)
    lse = lses[0]  # (B, A, l) float32
    for lse_i in lses[1:]:
        lse = torch.logaddexp(lse, lse_i)
    total = outs[0].float() * (lses[0] - lse).exp_().unsqueeze(-1)
    for o, lse_i in zip(outs[1:], lses[1:]):
        total = total + o.float() * (lse_i - lse).exp_().unsqueeze(-1)
    return total.to(dtype)
