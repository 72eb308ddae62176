"""KV precision: keys/values stored in 8 bits with their scales, as a lever (`kv_precision`).

    d8+kv8        keys/values of every stored scale in int8 (symmetric, absmax / 127)
    d8+kvfp8      in float8 e4m3 (absmax / 448)
    d8+kv8@5      scales 0..4 (e.g. the bridge zone) kept in the compute dtype, int8 from 5 on

The lever's hook `storage` tells the caches (sampling/kv_cache.py) which format each scale's
keys/values are stored in; attention still runs in the compute dtype.

Granularity: one scale per (row, head, token) for keys and for values, symmetric absmax
(`x ~ q * s`, `s = max_e |x_e| / 127` for int8, `/ 448` for e4m3). Coarser scales are what the
VAR quantisation papers found break: PTQ4ARVG (ICLR 2026) reports highly dynamic activations
along the token dimension (position embeddings) with "sink" tokens of extreme magnitude, and
severe channel-wise outliers (AdaLN modulation), and quantises token-wise; FPQVAR reports
outlier channels that vary over time (scales); LiteVAR keeps precision-sensitive parts in fp16.
A per-tensor or per-layer scale would be set by the outlier tokens and flush the rest to a few
levels; per token, each token's range is its own; per head, an outlier channel costs
resolution only within its head. VAR's keys are L2-normalised per head (`attn_l2_norm`), so a
key's absmax per (token, head) is at most 1 and its scale is well conditioned.

Scales are float32: 4 bytes per E channels (E = 64 at VAR-d30: +6% over the int8 payload), and
no range or rounding of their own (fp16 scales underflow for small values; bf16 ones would add a
2^-9 relative error to every element of the token-head).

Memory, counted exactly by the caches' `KVMeter` (and so by the cost model's prediction):
the stored payload and scales; while a scale's new keys or values are quantised, a float32
workspace of their size and their scales (`x / s`, `s`, freed at once); and while a layer
attends, a transient compute-dtype copy of what it reads from a quantised store
(`dequantise`: never the whole cache, one layer's reads, freed when its attention is done).
A scale's own new keys/values are attended to as computed (not round-tripped through 8 bits),
as at a layer's last scale.
Shape legend (the package's, see variant/__init__.py): R rows, A heads, n tokens, E head dim.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch

from .lever import Lever, LeverContext


@dataclass(frozen=True)
class Format:
    """A storage format of keys/values: its dtype and the largest magnitude it holds."""

    name: str
    dtype: torch.dtype
    max_value: float
    spec: str  # its spec part: 'kv' + spec


FORMATS = {"int8": Format("int8", torch.int8, 127.0, "8"),
           "fp8": Format("fp8", torch.float8_e4m3fn, 448.0, "fp8")}
_ALIASES = {"int8": "int8", "8": "int8", "i8": "int8", "fp8": "fp8", "float8": "fp8",
            "e4m3": "fp8", "fp8e4m3": "fp8", "float8_e4m3fn": "fp8"}
_SMALLEST = 1e-12  # absmax floor: an all-zero token-head gets a finite scale (and zeros)


def check_device(fmt: str, device_type: str) -> None:
    """Refuse a format the device cannot store and convert (ValueError naming what works)."""
    reason = _probe(fmt, device_type)
    if reason:
        works = [f for f in FORMATS if f != fmt and not _probe(f, device_type)]
        use = (f"use {' or '.join(map(repr, works))} there (e.g. --kv-precision {works[0]})"
               if works else "no 8-bit KV format works there")
        raise ValueError(f"KV precision {fmt!r} stores {FORMATS[fmt].dtype}, which the "
                         f"{device_type} device cannot hold or convert here ({reason}); {use}, "
                         "or drop the KV precision.")


@functools.cache
def _probe(fmt: str, device_type: str) -> str:
    """'' when values round-trip through the format on the device, else why not."""
    if device_type == "meta":
        return ""
    try:  # (a device type torch is not compiled for raises AssertionError)
        probe = torch.tensor([1.0, -2.0], device=device_type).to(FORMATS[fmt].dtype)
        ok = probe.to(torch.float32).cpu().tolist() == [1.0, -2.0]
        return "" if ok else "the round trip changes values"
    except (RuntimeError, TypeError, NotImplementedError, AssertionError) as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# ------------------------------------------------------------------------------ the store
class KVStore:
    """Keys and values of `tokens` positions, (R, A, n, E), in the compute dtype or a `Format`.

    Plain (fmt None): `k`, `v` in the compute dtype; reads are views. Quantised: payloads `k`,
    `v` in the format's dtype and float32 scales `k_scale`, `v_scale` (R, A, n, 1); reads are
    dequantised copies (module docstring)."""

    def __init__(self, fmt: str | None, shape: tuple[int, int, int], tokens: int,
                 dtype: torch.dtype, device):
        R, A, E = shape
        self.fmt, self.dtype = fmt, dtype
        store = dtype if fmt is None else FORMATS[fmt].dtype
        self.k = torch.empty(R, A, tokens, E, dtype=store, device=device)
        self.v = torch.empty_like(self.k)
        self.k_scale = self.v_scale = None
        if fmt is not None:
            self.k_scale = torch.empty(R, A, tokens, 1, dtype=torch.float32, device=device)
            self.v_scale = torch.empty_like(self.k_scale)

    @property
    def nbytes(self) -> int:
        scales = 0 if self.fmt is None else self.k_scale.nbytes + self.v_scale.nbytes
        return self.k.nbytes + self.v.nbytes + scales

    def copy_from(self, other: KVStore, filled: int) -> None:
        """Move the first `filled` positions of a smaller store of the same format here."""
        for mine, theirs in zip(self._tensors(), other._tensors()):
            mine[:, :, :filled].copy_(theirs[:, :, :filled])

    def write(self, start: int, k_new: torch.Tensor, v_new: torch.Tensor, meter) -> None:
        """Store new keys/values (R, A, l, E) at positions start..start+l-1."""
        stop = start + k_new.shape[2]
        if self.fmt is None:
            self.k[:, :, start:stop].copy_(k_new)
            self.v[:, :, start:stop].copy_(v_new)
            return
        fmt = FORMATS[self.fmt]
        for x, q, s in ((k_new, self.k, self.k_scale), (v_new, self.v, self.v_scale)):
            quantise_into(x, q[:, :, start:stop], s[:, :, start:stop], fmt, meter)

    def read(self, stop: int, meter) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions 0..stop-1 in the compute dtype: views when plain, else
        dequantised copies, added to the meter; the cache releases them (`transient_bytes`)
        once everything the layer reads is counted."""
        if self.fmt is None:
            return self.k[:, :, :stop], self.v[:, :, :stop]
        k = dequantise(self.k[:, :, :stop], self.k_scale[:, :, :stop], self.dtype)
        v = dequantise(self.v[:, :, :stop], self.v_scale[:, :, :stop], self.dtype)
        meter.add(k.nbytes + v.nbytes)
        return k, v

    def transient_bytes(self, stop: int) -> int:
        """Bytes of the copies `read(stop)` makes (0 when plain)."""
        if self.fmt is None:
            return 0
        return 2 * self.k[:, :, :stop].numel() * self.dtype.itemsize

    def _tensors(self):
        return (self.k, self.v) if self.fmt is None else (self.k, self.v, self.k_scale,
                                                          self.v_scale)


def quantise_into(x_RAlE: torch.Tensor, q_RAlE: torch.Tensor, s_RAl1: torch.Tensor, fmt: Format,
                  meter=None) -> None:
    """Symmetric absmax quantisation per (row, head, token): `s = max |x| / max_value` into
    `s_RAl1` (float32), `q = round(x / s)` into `q_RAlE` (the format's dtype). The workspace,
    `s` and `x / s` in float32 (fresh tensors: compiled steps refuse strided `out=`), is
    counted by `meter` while it lives."""
    s = torch.linalg.vector_norm(x_RAlE, ord=float("inf"), dim=-1, keepdim=True,
                                 dtype=torch.float32)
    s.clamp_(min=_SMALLEST).div_(fmt.max_value)
    work = torch.div(x_RAlE, s)  # float32 by promotion
    if meter is not None:
        meter.add(s.nbytes + work.nbytes)
    if not fmt.dtype.is_floating_point:
        work.round_()  # integer conversion truncates; float8 conversion rounds to nearest
    q_RAlE.copy_(work)
    s_RAl1.copy_(s)
    if meter is not None:
        meter.free_now(s.nbytes + work.nbytes)


def dequantise(q_RAnE: torch.Tensor, s_RAn1: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`q * s` in `dtype` -> (R, A, n, E): one new tensor (the payload converts exactly; one
    rounding, of the product)."""
    out = torch.empty(q_RAnE.shape, dtype=dtype, device=q_RAnE.device)
    out.copy_(q_RAnE)
    return out.mul_(s_RAn1)


# ------------------------------------------------------------------------------ the lever
class KVPrecision(Lever):
    """Keys/values stored in 8 bits from a scale on (0 unless given: every stored scale)."""

    name, spec_syntax, metavar = "kv_precision", "kv8[@SCALE], kvfp8[@SCALE]", "FORMAT[@SCALE]"
    # disjoint from KV retention's 'kvFIRST,RECENT' (that one always has a comma, this never)
    spec = re.compile(r"^kv(8|int8|fp8)(?:@(\d{1,9}))?$", re.IGNORECASE)
    help = ("store keys/values in int8 or fp8 (e4m3) with float32 scales per token and head, "
            "from SCALE on (0-based; earlier scales, e.g. the bridge zone, stay in the compute "
            "dtype); spec kv8, kvfp8, kv8@5 (not kvFIRST,RECENT, which is KV retention); e.g. "
            "--kv-precision int8@5")
    example, families = "d8+kv8", ("KV precision",)
    _TEXT = re.compile(r"^\s*([a-z0-9_]+)\s*(?:@\s*(\d{1,9}))?\s*$", re.IGNORECASE)
    # 'kvWORD[@SCALE]' with a letter in WORD names a format ('kv12' may be a retention typo)
    _PART = re.compile(r"^kv(8|[a-z0-9_]*[a-z][a-z0-9_]*)(?:@(\d{1,9}))?$", re.IGNORECASE)

    def read(self, value):
        """'int8', '8', 'fp8', 'int8@5' or ('int8', 5) -> (format, first scale); None stays."""
        if value is None:
            return None
        if isinstance(value, str):
            m = self._TEXT.match(value)
            if m is None:
                raise ValueError(f"cannot read kv_precision {value!r}: use FORMAT or "
                                 f"FORMAT@SCALE with FORMAT one of {', '.join(FORMATS)} and "
                                 "SCALE the first (0-based) scale stored in it, e.g. int8@5.")
            value = (m.group(1), int(m.group(2) or 0))
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise ValueError(f"kv_precision must be a format such as 'int8' or 'fp8', "
                             f"'int8@5' or ('int8', 5), got {value!r}.")
        fmt, start = value
        name = _ALIASES.get(str(fmt).strip().lower())
        if name is None:
            raise ValueError(f"unknown KV precision {fmt!r}: the formats are "
                             f"{', '.join(FORMATS)} ('8' is int8); e.g. kv_precision='int8'.")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"kv_precision's first scale must be an int >= 0, got {start!r}; "
                             "e.g. 'int8@5'.")
        return name, start

    def show(self, value):
        return value[0] if value[1] == 0 else f"{value[0]}@{value[1]}"

    to_json = show

    def parse_part(self, part):
        m = self._PART.match(part)  # an unknown format is named as such
        if m is None or m.group(1).lower() == "keep":
            return None
        if self.spec.match(part) is None:
            raise ValueError(f"unknown KV precision {m.group(1)!r} in {part!r}: the spec parts "
                             f"are {self.spec_syntax} (KV retention is kvFIRST,RECENT)")
        return {self.name: self.read((m.group(1), int(m.group(2) or 0)))}

    def spec_part(self, values):
        value = values[self.name]
        if value is None:
            return None
        return "kv" + FORMATS[value[0]].spec + ("" if value[1] == 0 else f"@{value[1]}")

    def grid(self, num_scales, subnets):
        return {"full": ["kv8"], "deepest": ["kv8"]}

    def normalise(self, value, context: LeverContext):
        K = context.num_scales
        if value is None:
            return None
        if not value[1] < K:
            raise ValueError(f"kv_precision's first quantised scale must be in 0..{K - 1} (this "
                             f"model has {K} scales), got {value[1]}; e.g. "
                             f"kv_precision='{value[0]}@{max(0, K - 4)}' (spec "
                             f"'d8+kv{FORMATS[value[0]].spec}@{max(0, K - 4)}').")
        # the last scale's keys/values are never stored: from it on, nothing is quantised
        return None if value[1] == K - 1 else value

    def storage(self, value, scale_index):
        return value[0] if scale_index >= value[1] else None
