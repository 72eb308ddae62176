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

import contextlib
import functools
import warnings
from collections.abc import Callable

import torch

from ..compiling import recompile_room

# Keys/values visible to a query block: (k_BALE, v_BALE). A cache callback stores this scale's
# keys/values and returns what the queries may attend to.
KVCallback = Callable[[torch.Tensor, torch.Tensor], "Attendable"]

# The math route chunks the batch so one float32 score matrix stays under this.
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


# ---------------------------------------------------------------------------- routes
# The kernels that attend to one part and also return its log-sum-exp (float32, (B, A, l)), so
# parts merge exactly (`merge_parts`). Each runs in the keys' dtype on views of the cache: no
# route copies, upcasts or concatenates the kept keys/values, so the cache's `kv_peak_bytes`
# (its buffers plus the unstored new keys/values it counts) is all the key/value memory alive.
# - "cpu_flash": PyTorch's fused CPU flash attention
#   (`_scaled_dot_product_flash_attention_for_cpu`).
# - "cuda_flash": SDPA's CUDA flash kernel (fp16/bf16, head dim a multiple of 8, at most 256).
# - "cuda_efficient": SDPA's CUDA memory-efficient kernel (any float dtype, head dim % 8 == 0).
# - "flex": FlexAttention with its log-sum-exp; compiled (fused) on CUDA, eager elsewhere. Eager
#   FlexAttention is torch's unfused reference: it materialises the scores and, for half
#   dtypes, casts keys to float32 inside torch; on CPU it is a numerics check, not a memory path.
# - "math": plain matmul + softmax, the reference: scores in the keys' dtype, softmax in float32,
#   chunked over rows so one float32 score matrix stays under `max_score_bytes`.
ROUTES = ("cpu_flash", "cuda_flash", "cuda_efficient", "flex", "math")
_HALF = (torch.float16, torch.bfloat16)


def choose_route(device: torch.device | str, dtype: torch.dtype, backend: str,
                 head_dim: int) -> str:
    """The attention route for one call: the only place a kernel is chosen.

    `backend` is the model's `attn_backend` (config.ATTN_BACKENDS): "math" always takes the
    math route and "flex" FlexAttention. "sdpa" takes the fused kernel the device has: CPU
    flash on CPU; on CUDA the flash kernel for fp16/bf16 with a head dim it supports, else the
    memory-efficient kernel; the math route where neither applies (other devices, head dims
    that are not a multiple of 8, which the CUDA kernels would pad with a copy).
    """
    device = torch.device(device)
    if backend == "math":
        return "math"
    if backend == "flex":
        return "flex"
    if backend != "sdpa":
        raise ValueError(f"unknown attn_backend {backend!r}; use 'sdpa', 'flex' or 'math'.")
    if device.type == "cpu":
        return "cpu_flash"
    if device.type == "cuda" and head_dim % 8 == 0:
        return "cuda_flash" if dtype in _HALF and head_dim <= 256 else "cuda_efficient"
    return "math"


def multi_part_attention(q_BAlE, keys: Attendable, scale: float, *, backend: str = "sdpa",
                         route: str | None = None, max_score_bytes: int = MAX_SCORE_BYTES):
    """Softmax attention over the concatenation of `keys.parts` without concatenating them.

    One attention per part with `route` (default: `choose_route` for these tensors and
    `backend`), merged by their log-sum-exps. Returns (B, A, l, E) in the values' dtype. On
    CPU with the default backend the arithmetic is the former fused CPU path's, operation for
    operation (the sampled tokens of the package's fingerprints depend on it).
    """
    dtype = keys.v.dtype
    route = route or choose_route(q_BAlE.device, dtype, backend, q_BAlE.shape[-1])
    if route == "math":
        return _math_attention(q_BAlE.to(dtype), keys, scale, max_score_bytes)
    one_part = _ONE_PART.get(route)
    if one_part is None:
        raise ValueError(f"unknown attention route {route!r}; choose one of {ROUTES}.")
    q = q_BAlE.to(dtype)
    outs, lses = [], []
    for k, v in keys.parts:
        o, lse = one_part(q, k, v, scale)
        outs.append(o)
        lses.append(lse)
    return merge_parts(outs, lses, dtype)


def merge_parts(outs, lses, dtype: torch.dtype) -> torch.Tensor:
    """softmax([s1, s2, ...]) @ [v1; v2; ...] = sum_i w_i * o_i, w_i = exp(lse_i - lse).

    `outs`: each part's attention output (B, A, l, E); `lses`: their log-sum-exps (B, A, l).
    Weights and sum in float32 (query-sized, never key-sized), result in `dtype`.
    """
    lse = lses[0]
    for lse_i in lses[1:]:
        lse = torch.logaddexp(lse, lse_i)
    total = outs[0].float() * (lses[0] - lse).exp_().unsqueeze(-1)
    for o, lse_i in zip(outs[1:], lses[1:]):
        total = total + o.float() * (lse_i - lse).exp_().unsqueeze(-1)
    return total.to(dtype)


def _cpu_flash(q, k, v, scale):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)[:2]


def _cuda_flash(q, k, v, scale):
    o, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale)[:2]
    return o, lse


def _cuda_efficient(q, k, v, scale):
    o, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, None, True, scale=scale)[:2]
    return o, lse[..., :q.shape[2]]  # the kernel pads the log-sum-exp's length to 32


def _flex(q, k, v, scale, attn_bias=None):
    """FlexAttention -> (out, lse); `attn_bias` (1, 1, l, L) is added to the scores."""
    from torch.nn.attention import flex_attention as flex

    score_mod = None
    if attn_bias is not None:
        bias_LL = attn_bias[0, 0]

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + bias_LL[q_idx, kv_idx]

    if torch.compiler.is_compiling():
        # Traced into a compiled step, FlexAttention loses some of the KV meter's side effects
        # (measured: the meter's live bytes end non-zero), so the step refuses to compile whole
        # and runs eagerly, with FlexAttention compiled on its own on CUDA.
        raise NotImplementedError("FlexAttention inside a compiled step (attn_backend 'flex' "
                                  "with compile) loses KV meter updates")
    if q.device.type == "cuda":  # one graph per shape, more than dynamo's default limit
        fn, context = _compiled_flex(), recompile_room()
    else:  # eager is deliberate here (see ROUTES)
        fn, context = flex.flex_attention, _quiet_eager_flex()
    aux_request = getattr(flex, "AuxRequest", None)  # torch >= 2.9; older ones: return_lse
    with context:
        if aux_request is None:
            return fn(q, k, v, score_mod=score_mod, scale=scale, return_lse=True)
        o, aux = fn(q, k, v, score_mod=score_mod, scale=scale, return_aux=aux_request(lse=True))
    return o, aux.lse


def flex_attention(q_BALE, k_BALE, v_BALE, scale: float, attn_bias=None) -> torch.Tensor:
    """One-part FlexAttention (the "flex" backend's single reads and teacher forcing)."""
    return _flex(q_BALE, k_BALE, v_BALE, scale, attn_bias)[0]


@contextlib.contextmanager
def _quiet_eager_flex():
    """Eager FlexAttention's "called without torch.compile" warning, expected here, silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without torch.compile.*")
        yield


@functools.cache
def _compiled_flex():
    """FlexAttention compiled once per process, on first use on CUDA (never at import)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


_ONE_PART = {"cpu_flash": _cpu_flash, "cuda_flash": _cuda_flash,
             "cuda_efficient": _cuda_efficient, "flex": _flex}


def _math_attention(q_BAlE, keys: Attendable, scale: float, max_score_bytes: int):
    """The reference: scores per part in the keys' dtype, one float32 softmax across parts."""
    B, A, num_q, _ = q_BAlE.shape
    n = sum(k.shape[2] for k, _ in keys.parts)
    step = max(1, max_score_bytes // max(1, A * num_q * n * 4))
    dtype = keys.v.dtype
    outs = []
    for b in range(0, B, step):
        q = q_BAlE[b:b + step] * scale
        scores = [(q @ k[b:b + step].transpose(-2, -1)).float() for k, _ in keys.parts]
        m = scores[0].amax(-1, keepdim=True)
        for s in scores[1:]:
            m = torch.maximum(m, s.amax(-1, keepdim=True))
        exps = [(s - m).exp_() for s in scores]
        z = sum(e.sum(-1, keepdim=True) for e in exps)
        o = sum((e.to(dtype) @ v[b:b + step]).float() for e, (_, v) in zip(exps, keys.parts))
        outs.append(o.div_(z))
    return torch.cat(outs).to(dtype) if len(outs) > 1 else outs[0].to(dtype)
