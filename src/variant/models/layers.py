"""Transformer layers of VAR: AdaLN self-attention blocks and the AdaLN head.

Parameter names are the official ones (`mat_qkv`, `q_bias`, `zero_k_bias`, `scale_mul_1H11`,
`ada_lin`, `ada_gss`, `head_nm`), so official state dicts load unchanged.

Shape legend (the package's, see variant/__init__.py): B batch, L tokens in the pass, l tokens of
one scale, D width (= condition width), A attention heads, E head dim, V vocab. The official
parameter name `scale_mul_1H11` keeps its own letters (H there: heads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling.attention import (
    Attendable,
    KVCallback,
    RowSplit,
    flex_attention,
    multi_part_attention,
)

# float32 ln(100), the official clamp of the learned per-head attention scale.
MAX_SCALE_MUL = math.log(100.0)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth (timm semantics: scale kept samples by 1/keep)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class SelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, attn_l2_norm: bool, backend: str = "sdpa"):
        super().__init__()
        assert embed_dim % num_heads == 0
        self.num_heads, self.head_dim, self.backend = num_heads, embed_dim // num_heads, backend
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)

    def project(self, x_BLD: torch.Tensor):
        """One fused qkv GEMM -> q, k, v (B, A, L, E); q carries the learned per-head scale."""
        B, L, D = x_BLD.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BLD, self.mat_qkv.weight, bias).view(B, L, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.attn_l2_norm:
            scale_mul = self.scale_mul_1H11.clamp_max(MAX_SCALE_MUL).exp()
            q = F.normalize(q, dim=-1).mul(scale_mul)
            k = F.normalize(k, dim=-1)
        # K and V share the compute dtype (under autocast F.normalize returns fp32 keys).
        return q.to(v.dtype), k.to(v.dtype), v

    def attend(self, q_BALE, keys: Attendable | RowSplit, attn_bias=None) -> torch.Tensor:
        if isinstance(keys, RowSplit):  # row groups with their own caches, run together
            return keys.attend(q_BALE, self.attend)
        if keys.num_parts > 1:
            return multi_part_attention(q_BALE, keys, self.scale, backend=self.backend)
        if self.backend == "flex":  # teacher forcing's block-causal bias becomes a score_mod
            return flex_attention(q_BALE, keys.k, keys.v, self.scale, attn_bias)
        if self.backend == "sdpa":
            return F.scaled_dot_product_attention(
                q_BALE, keys.k, keys.v, attn_mask=attn_bias, scale=self.scale)
        s = (q_BALE * self.scale) @ keys.k.transpose(-2, -1)
        if attn_bias is not None:
            s = s + attn_bias
        return s.softmax(-1) @ keys.v

    def forward(self, x_BLD: torch.Tensor, attn_bias=None, kv: KVCallback | None = None):
        """Teacher forcing passes `attn_bias`; the sampler passes a cache callback `kv`."""
        B, L, D = x_BLD.shape
        q, k, v = self.project(x_BLD)
        keys = kv(k, v) if kv is not None else Attendable(k, v)
        out_BALE = self.attend(q, keys, attn_bias)
        return self.proj(out_BALE.transpose(1, 2).reshape(B, L, D))


class FFN(nn.Module):
    def __init__(self, embed_dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, embed_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class AdaLNSelfAttn(nn.Module):
    """x += gamma1 * Attn(LN(x)(1+scale1)+shift1); x += gamma2 * FFN(LN(x)(1+scale2)+shift2)."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float, shared_aln: bool,
                 attn_l2_norm: bool, norm_eps: float, drop_path: float, backend: str = "sdpa"):
        super().__init__()
        self.C, self.shared_aln, self.drop_path = embed_dim, shared_aln, drop_path
        self.attn = SelfAttention(embed_dim, num_heads, attn_l2_norm, backend)
        self.ffn = FFN(embed_dim, round(embed_dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, embed_dim) / embed_dim**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 6 * embed_dim))

    def modulation(self, cond):
        """Six (B, 1, D) vectors, official order: gamma1, gamma2, scale1, scale2, shift1, shift2.

        `cond` is the class condition (B, D), or with shared AdaLN the shared projection
        (B, 1, 6, D).
        """
        if self.shared_aln:
            return (self.ada_gss + cond).unbind(2)
        return self.ada_lin(cond).view(-1, 1, 6, self.C).unbind(2)

    def forward(self, x_BLD, cond, attn_bias=None, kv: KVCallback | None = None):
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(cond)
        h = self.ln_wo_grad(x_BLD).mul(scale1.add(1)).add_(shift1)
        a = self.attn(h, attn_bias=attn_bias, kv=kv).mul_(gamma1)
        x_BLD = x_BLD + drop_path(a, self.drop_path, self.training)
        h = self.ln_wo_grad(x_BLD).mul(scale2.add(1)).add_(shift2)
        f = self.ffn(h).mul(gamma2)
        return x_BLD + drop_path(f, self.drop_path, self.training)


class AdaLNBeforeHead(nn.Module):
    def __init__(self, embed_dim: int, norm_eps: float):
        super().__init__()
        self.C = embed_dim
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))

    def forward(self, x_BLD, cond_BD):
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x_BLD).mul(scale.add(1)).add_(shift)


class SharedAdaLin(nn.Linear):
    """Shared AdaLN projection (VAR-d36): (B, D) -> (B, 1, 6, D)."""

    def forward(self, cond_BD):
        return super().forward(cond_BD).view(-1, 1, 6, self.in_features)
