"""Attention routes (sampling/attention.py): the route chooser, each route's numerics against
plain softmax attention over the concatenated parts, and that no route copies the keys/values.

CPU runs the routes it has (cpu_flash, flex eagerly, math); the CUDA kernels run the same checks
in tests/gpu when a GPU is present.
"""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from variant.sampling.attention import (
    MAX_SCORE_BYTES,
    ROUTES,
    Attendable,
    choose_route,
    flex_attention,
    multi_part_attention,
)

CPU_ROUTES = ("cpu_flash", "flex", "math")
# bf16 keeps 8 significant bits: outputs of unit size agree with the float64 reference to a
# few bf16 ulps (2^-8 each); 2e-2 absolute and relative bounds that with margin.
BF16_TOL = {"atol": 2e-2, "rtol": 2e-2}


def parts_in_buffer(B=2, A=3, splits=(7, 9), E=16, dtype=torch.float32, seed=0, device="cpu"):
    """Keys/values as views of (B, A, capacity, E) buffers, as the lean cache returns them."""
    g = torch.Generator().manual_seed(seed)
    n = sum(splits)
    k = (torch.randn(B, A, n + 5, E, generator=g) * 2).to(device, dtype)
    v = torch.randn(B, A, n + 5, E, generator=g).to(device, dtype)
    parts, start = [], 0
    for size in splits:
        parts += [k[:, :, start:start + size], v[:, :, start:start + size]]
        start += size
    return Attendable(*parts), k[:, :, :n], v[:, :, :n]


def check_route(route: str, device: str, dtype: torch.dtype, splits=(7, 9), num_q=4) -> None:
    """`route` on `device` in `dtype` == float64 softmax attention over the concatenation."""
    keys, k, v = parts_in_buffer(splits=splits, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(k.shape[0], k.shape[1], num_q, k.shape[3], generator=g).to(device, dtype)
    scale = 1 / math.sqrt(k.shape[-1])
    out = multi_part_attention(q, keys, scale, route=route)
    assert out.dtype == dtype and out.shape == q.shape
    ref = ((q.double() @ k.double().transpose(-2, -1)) * scale).softmax(-1) @ v.double()
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else BF16_TOL
    torch.testing.assert_close(out.double(), ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("splits", [(12,), (5, 7), (1, 4, 7)])
@pytest.mark.parametrize("route", CPU_ROUTES)
def test_cpu_routes_match_softmax_attention(route, splits, dtype):
    check_route(route, "cpu", dtype, splits)


def test_default_cpu_route_is_the_former_fused_path():
    """backend sdpa on CPU = per-part CPU flash merged by log-sum-exp, bit for bit (the package's
    fingerprints rest on it)."""
    keys, k, v = parts_in_buffer()
    q = torch.randn(2, 3, 4, 16, generator=torch.Generator().manual_seed(2))
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    (o1, l1), (o2, l2) = (flash(q, kk, vv, scale=0.25)[:2] for kk, vv in keys.parts)
    lse = torch.logaddexp(l1, l2)
    want = o1 * (l1 - lse).exp().unsqueeze(-1) + o2 * (l2 - lse).exp().unsqueeze(-1)
    assert torch.equal(multi_part_attention(q, keys, 0.25), want)


@pytest.mark.parametrize(("device", "dtype", "backend", "head_dim", "route"), [
    ("cpu", torch.float32, "sdpa", 64, "cpu_flash"),
    ("cpu", torch.bfloat16, "sdpa", 12, "cpu_flash"),
    ("cuda", torch.bfloat16, "sdpa", 64, "cuda_flash"),
    ("cuda", torch.float16, "sdpa", 128, "cuda_flash"),
    ("cuda", torch.float32, "sdpa", 64, "cuda_efficient"),
    ("cuda", torch.bfloat16, "sdpa", 512, "cuda_efficient"),
    ("cuda", torch.bfloat16, "sdpa", 12, "math"),  # the CUDA kernels would pad with a copy
    ("mps", torch.float32, "sdpa", 64, "math"),
    ("cuda", torch.bfloat16, "flex", 64, "flex"),
    ("cpu", torch.float32, "flex", 64, "flex"),
    ("cuda", torch.bfloat16, "math", 64, "math"),
    ("cpu", torch.float32, "math", 64, "math"),
])
def test_choose_route(device, dtype, backend, head_dim, route):
    assert choose_route(device, dtype, backend, head_dim) == route
    assert route in ROUTES


def test_unknown_backend_and_route_are_refused():
    keys, _, _ = parts_in_buffer()
    q = torch.zeros(2, 3, 4, 16)
    with pytest.raises(ValueError, match="attn_backend"):
        choose_route("cpu", torch.float32, "xformers", 64)
    with pytest.raises(ValueError, match="route 'fast'"):
        multi_part_attention(q, keys, 1.0, route="fast")


class _Allocations(TorchDispatchMode):
    """Elements of every new tensor an op returns (views share their input's memory)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.sizes.append(t.numel())
        return out


@pytest.mark.parametrize(("route", "dtype"), [
    ("cpu_flash", torch.float32), ("cpu_flash", torch.bfloat16), ("math", torch.float32),
    ("math", torch.bfloat16)])
def test_routes_make_no_key_value_sized_tensor(route, dtype):
    """With few queries (l = 2 < E), anything as large as a kept key part would be a copy of
    it: no op of the route returns one (the cache's kv_peak_bytes counts everything key-sized).
    Eager FlexAttention is not a memory path (see attention.ROUTES) and runs under no dispatch
    mode."""
    keys, _, _ = parts_in_buffer(splits=(40, 24), dtype=dtype)
    q = torch.randn(2, 3, 2, 16).to(dtype)
    smallest_part = min(k.numel() for k, _ in keys.parts)
    with _Allocations() as seen:
        multi_part_attention(q, keys, 0.25, route=route)
    assert seen.sizes and max(seen.sizes) < smallest_part


def test_flex_with_bias_matches_sdpa_with_mask():
    """The flex backend's teacher forcing: the block-causal bias as a score_mod."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 14, 8, generator=g) for _ in range(3))
    level = torch.tensor([0] + [1] * 4 + [2] * 9)
    bias = torch.where(level[:, None] >= level[None, :], 0.0, -torch.inf)[None, None]
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.3)
    torch.testing.assert_close(flex_attention(q, k, v, 0.3, bias), want)


# ------------------------------------------------------------------ multi-part attention
def reference_attention(q, k, v, scale):
    return ((q @ k.transpose(-2, -1)) * scale).softmax(-1) @ v


@pytest.mark.parametrize("path", ["cpu_flash", "flex", "math", "math-per-row"])
@pytest.mark.parametrize("splits", [(12,), (5, 7), (1, 4, 7)])
def test_multi_part_attention_equals_softmax_over_the_concatenation(path, splits):
    g = torch.Generator().manual_seed(sum(splits) + len(splits))
    B, A, n, E = 3, 2, 5, 8
    q = torch.randn(B, A, n, E, generator=g)
    k = torch.randn(B, A, sum(splits), E, generator=g) * 2
    v = torch.randn(B, A, sum(splits), E, generator=g)
    parts = []
    for kk, vv in zip(k.split(splits, 2), v.split(splits, 2)):
        parts += [kk, vv]
    keys = Attendable(*parts)
    assert keys.num_parts == len(splits)
    limit = MAX_SCORE_BYTES
    if path == "math-per-row":
        limit = A * n * sum(splits) * 4  # one row's score matrix: chunks of one row
    scale = 1 / math.sqrt(E)
    out = multi_part_attention(q, keys, scale, route=path.split("-")[0], max_score_bytes=limit)
    assert out.shape == (B, A, n, E) and out.dtype == torch.float32
    torch.testing.assert_close(out, reference_attention(q, k, v, scale))


def test_attendable_takes_pairs():
    with pytest.raises(ValueError, match="pairs"):
        Attendable(torch.zeros(1), torch.zeros(1), torch.zeros(1))
