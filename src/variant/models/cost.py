"""One model of cost: FLOPs, token-layers and KV-cache bytes of a VAR under any depth plan.

    cost = CostModel(var_config, dtype="bf16", rows=128)  # 64 images, doubled by guidance
    cost.flops(plan), cost.flops_per_scale(plan, include_head=True)
    cost.kv_peak_bytes(plan, levers)  # the caches' peak, exactly what the sampler measures
    cost.official_kv_bytes()     # the official sampler: every layer keeps all L tokens

Units. A workload is `rows` token sequences run together: the batch, doubled by classifier-free
guidance. FLOPs (2 per multiply-add) and bytes cover all rows; token-layers (one token through
one layer) count one sequence, as in `DepthPlan`.

FLOPs of one token through one layer: the qkv projection 3D^2, the output projection D^2 and the
FFN 2DF (F = round(D * mlp_ratio)) multiply-adds. Attention adds 2nmD multiply-adds at a scale of
n tokens whose layer attends to m tokens (QK^T and PV; m: the tokens of the scales that ran the
layer so far, this one included). With `include_head`, the word embedding (Cvae -> D) and the
vocab head (D -> V) run once per token whatever the plan. AdaLN, norms and softmax are left out.

KV bytes. A token-layer of keys and values takes rows x D x 2 (k, v) x the compute dtype's bytes.
The lean bound is `DepthPlan.kv_peak_token_layers` of those (DESIGN invariant 3), which the
cache meets for the paper's plan families; `kv_peak_bytes` is the exact peak for any plan and
levers (sampling/levers.py: guidance levers, token pruning, KV retention; KV precision with its
scales, workspace and dequantised reads, sampling/kv_quant.py). The
official sampler keeps all L tokens of every layer, and under 16-bit autocast its keys stay fp32
after the L2 normalisation (`F.normalize` autocasts to fp32): 4 + 2 = 6 bytes per channel of k
and v instead of 4.
Legend (the package's, see variant/__init__.py): K scales, L tokens, D width, F FFN width, V vocab;
the model's depth is spelled out.
"""

from __future__ import annotations

import torch

from ..config import VARConfig
from ..sampling.levers import Levers
from ..sampling.plan import DepthPlan
from ..sampling.sampler import predict_kv_peak_bytes
from ..sampling.work import scale_rows, steps
from ..units import dtype_bytes, dtype_name, parse_dtype


class CostModel:
    """FLOPs, token-layers and KV bytes of one VAR shape for one workload (dtype, rows)."""

    def __init__(self, var_config: VARConfig, dtype: str | torch.dtype = "fp32", rows: int = 1):
        if rows < 1:
            raise ValueError(f"rows (the batch, doubled by CFG) must be >= 1, got {rows}.")
        self.config = var_config
        self.dtype = parse_dtype(dtype)
        self.rows = int(rows)

    def __repr__(self) -> str:
        c = self.config
        return (f"CostModel(depth={c.depth}, width={c.width}, scales={c.num_scales}, "
                f"dtype={dtype_name(self.dtype)}, rows={self.rows})")

    @property
    def ffn_width(self) -> int:
        """Hidden width h of each block's FFN, as the model builds it."""
        return round(self.config.width * self.config.mlp_ratio)

    # ------------------------------------------------------------------ the work
    def levers_of(self, plan: DepthPlan, levers: Levers | None) -> Levers:
        """`levers` checked against this workload (None: none set, one group of all rows)."""
        c = self.config
        plan.check(c.depth, c.num_scales)
        if levers is None:
            return Levers.neutral(plan, c.num_scales)
        if levers.guided and self.rows % 2:
            raise ValueError(f"guided levers need an even number of rows (the batch, doubled "
                             f"by guidance), got {self.rows}.")
        return levers

    def batch(self, levers: Levers) -> int:
        """Images of the workload: its rows over the rows each image has in the plain pass."""
        return self.rows // 2 if levers.guided else self.rows

    # ------------------------------------------------------------------ FLOPs
    def flops_per_scale(self, plan: DepthPlan, include_head: bool = False,
                        levers: Levers | None = None) -> list[int]:
        """FLOPs of each scale under `plan` and `levers`, all rows, attention included (module
        docstring): every layer step of the work (sampling/work.py), each row group with its
        own plan, scales, tokens and context."""
        c, pn = self.config, self.config.patch_nums
        levers = self.levers_of(plan, levers)
        D, F = c.width, self.ffn_width
        per_token_layer = 2 * (3 * D * D + D * D + 2 * D * F)  # qkv, proj, fc1, fc2
        out = [0] * c.num_scales
        batch = self.batch(levers)
        for step in steps(levers, pn, batch):
            out[step.scale_index] += sum(  # QK^T and PV over the context
                part.rows * (part.tokens * per_token_layer + 2 * 2 * part.tokens * part.context
                             * D) for part in step.parts)
        if include_head:  # every position gets logits, whether it ran the layers or not
            head = 2 * D * c.V + 2 * c.Cvae * D  # vocab head, word embedding
            for k, p in enumerate(pn):
                out[k] += scale_rows(levers, batch, k) * p ** 2 * head
        return out

    def flops(self, plan: DepthPlan, include_head: bool = False,
              levers: Levers | None = None) -> int:
        """FLOPs of one pass over all scales under `plan` (and `levers`), all rows."""
        return sum(self.flops_per_scale(plan, include_head, levers))

    # ------------------------------------------------------------------ token-layers
    def token_layers(self, plan: DepthPlan, levers: Levers | None = None) -> float:
        """Tokens processed summed over layers, one sequence: all rows' work divided by the rows
        of the plain pass (so the full network's is its token-layers)."""
        levers = self.levers_of(plan, levers)
        total = sum(part.rows * part.tokens
                    for step in steps(levers, self.config.patch_nums, self.batch(levers))
                    for part in step.parts)
        return total // self.rows if total % self.rows == 0 else total / self.rows

    def kv_peak_token_layers(self, plan: DepthPlan) -> int:
        """The lean bound: the peak of key/value token-layers alive at once, one sequence
        (`DepthPlan.kv_peak_token_layers`; the cache meets it for the paper's families)."""
        return plan.kv_peak_token_layers(self.config.patch_nums)

    def official_kv_token_layers(self) -> int:
        """The official sampler's cache: all L tokens of every layer, one sequence."""
        return self.config.depth * self.config.seq_len

    # ------------------------------------------------------------------ bytes
    def kv_bytes_per_token_layer(self) -> int:
        """Bytes of keys and values of one token-layer for all rows, in the compute dtype."""
        return self.rows * self.config.width * 2 * dtype_bytes(self.dtype)

    def kv_peak_bytes(self, plan: DepthPlan, levers: Levers | None = None) -> int:
        """The KV caches' peak under `plan` and `levers`: what the sampler's `kv_peak_bytes`
        measures, exactly. The sampler's own loop and caches run on the meta device with a
        model that has only shapes (`sampling.sampler.predict_kv_peak_bytes`)."""
        c = self.config
        levers = self.levers_of(plan, levers)
        return predict_kv_peak_bytes(tuple(c.patch_nums), c.depth, (c.heads, c.head_dim),
                                     self.batch(levers), levers, self.dtype)

    def official_kv_bytes(self) -> int:
        """The official sampler's KV cache (keys fp32 under 16-bit autocast with L2 norm)."""
        value = dtype_bytes(self.dtype)
        key = dtype_bytes(torch.float32) if self.config.attn_l2_norm else value
        return self.official_kv_token_layers() * self.rows * self.config.width * (key + value)
