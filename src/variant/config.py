"""Model configurations: frozen dataclasses that validate themselves, plus named presets.

Field names follow the official VAR builders (`V`, `Cvae`, `ch`, `share_quant_resi`, `depth`,
`shared_aln`, `attn_l2_norm`, ...) so official hyper-parameters carry over unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
PATCH_NUMS_1024 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)

# How attention runs (sampling/attention.py `choose_route`): "sdpa" the fused kernels of the device,
# "flex" FlexAttention, "math" plain matmul + softmax.
ATTN_BACKENDS = ("sdpa", "flex", "math")


def _check_patch_nums(patch_nums: tuple[int, ...]) -> None:
    if len(patch_nums) < 1:
        raise ValueError("patch_nums is empty: give the side of each scale, e.g. (1, 2, 3, 4).")
    if any(int(p) != p or p < 1 for p in patch_nums):
        raise ValueError(f"patch_nums must be positive integers, got {patch_nums}.")
    if any(b <= a for a, b in zip(patch_nums, patch_nums[1:])):
        raise ValueError(f"patch_nums must be strictly increasing, got {patch_nums}.")


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """The multi-scale residual VQVAE (official `vae_ch160v4096z32`: V=4096, Cvae=32, ch=160)."""

    V: int = 4096  # codebook size
    Cvae: int = 32  # latent / codebook channels
    ch: int = 160  # base conv width; multiple of 32 (GroupNorm with 32 groups)
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    share_quant_resi: int = 4  # 0: one Phi per scale, 1: one shared Phi, k>1: k partially shared
    quant_resi: float = 0.5
    beta: float = 0.25
    using_znorm: bool = False
    dropout: float = 0.0
    patch_nums: tuple[int, ...] = PATCH_NUMS_256

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        _check_patch_nums(self.patch_nums)
        if self.V < 2 or self.Cvae < 1:
            raise ValueError(f"V must be >= 2 and Cvae >= 1, got V={self.V}, Cvae={self.Cvae}.")
        if self.ch % 32 or any((self.ch * m) % 32 for m in self.ch_mult):
            raise ValueError(
                f"ch={self.ch} with ch_mult={self.ch_mult} gives a width that is not a multiple of "
                "32; GroupNorm uses 32 groups, so pick ch as a multiple of 32 (e.g. 32, 64, 160)."
            )
        if self.num_res_blocks < 1 or not self.ch_mult:
            raise ValueError("num_res_blocks must be >= 1 and ch_mult must not be empty.")
        if self.share_quant_resi < 0:
            raise ValueError("share_quant_resi must be >= 0.")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        return self.downsample * self.patch_nums[-1]


@dataclass(frozen=True, kw_only=True)
class VARConfig:
    """The VAR transformer. Official rule: width = 64 * depth, heads = depth."""

    depth: int = 16
    embed_dim: int = 0  # 0 means the official 64 * depth
    num_heads: int = 0  # 0 means the official `depth`
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    V: int = 4096
    Cvae: int = 32
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    shared_aln: bool = False
    attn_l2_norm: bool = True
    cond_drop_rate: float = 0.1
    drop_path_rate: float = -1.0  # < 0 means the official 0.1 * depth / 24
    norm_eps: float = 1e-6
    attn_backend: str = "sdpa"

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        _check_patch_nums(self.patch_nums)
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}.")
        if self.width % self.heads:
            raise ValueError(
                f"embed_dim={self.width} is not divisible by num_heads={self.heads}; "
                "pick a width that is a multiple of the head count."
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}.")
        if not 0.0 <= self.cond_drop_rate < 1.0:
            raise ValueError(f"cond_drop_rate must be in [0, 1), got {self.cond_drop_rate}.")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(
                f"attn_backend must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}.")

    @property
    def width(self) -> int:
        return self.embed_dim or 64 * self.depth

    @property
    def heads(self) -> int:
        return self.num_heads or self.depth

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def drop_path(self) -> float:
        return 0.1 * self.depth / 24 if self.drop_path_rate < 0 else self.drop_path_rate

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def seq_len(self) -> int:
        return sum(p * p for p in self.patch_nums)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build `cls` from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(names)}.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        problem = _type_problem(value, defaults[key])
        if problem:
            raise ValueError(f"{cls.__name__} field {key!r} {problem}.")
    return cls(**kwargs)


def _type_problem(value: Any, default: Any) -> str | None:
    """What is wrong with `value` for a field whose default is `default` (None: it fits).

    A config read from JSON may hold "eight" for a depth, 8.5, true or NaN; the dataclasses'
    own checks compare numbers and would fail with a TypeError or accept a float."""
    if default is dataclasses.MISSING or default is None:
        return None
    kind = type(default)
    if kind is tuple:
        if not isinstance(value, tuple):
            return f"must be a list, got {value!r}"
        bad = [v for v in value if default and _type_problem(v, default[0])]
        return f"lists {bad[0]!r}, of the wrong type" if bad else None
    if kind is bool or isinstance(value, bool):
        return None if isinstance(value, bool) and kind is bool else (
            f"must be {kind.__name__}, got {value!r}")
    if kind is int and not isinstance(value, int):
        return f"must be a whole number, got {value!r}"
    if kind is float:
        if not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
    if kind is str and not isinstance(value, str):
        return f"must be a string, got {value!r}"
    return None


def config_to_json(cfg: Any) -> str:
    return json.dumps(config_to_dict(cfg), indent=2)


# --------------------------------------------------------------------------------------------
# Presets: named functions, one set of defaults.

@dataclass(frozen=True)
class ModelPreset:
    vae: VAEConfig
    var: VARConfig
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# The built-in model's tokenizer (trained by `variant train-tokenizer --preset builtin`, see
# tokenizer/presets.py): Shapes-10 at 64 px, 8x downsampling, L = 130 tokens, 1.1 M parameters.
BUILTIN_VAE = VAEConfig(V=512, Cvae=16, ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1,
                        share_quant_resi=4, patch_nums=(1, 2, 3, 4, 6, 8))


def _builtin() -> ModelPreset:
    """The built-in model: the `builtin` tokenizer (Shapes-10, 64 px, L = 130) + a depth-8 VAR."""
    var = VARConfig(depth=8, embed_dim=128, num_heads=4, num_classes=10, V=BUILTIN_VAE.V,
                    Cvae=BUILTIN_VAE.Cvae, patch_nums=BUILTIN_VAE.patch_nums, drop_path_rate=0.0)
    return ModelPreset(BUILTIN_VAE, var, "built-in: Shapes-10 at 64 px, depth 8, width 128")


def _official(depth: int, patch_nums: tuple[int, ...] = PATCH_NUMS_256, shared_aln: bool = False):
    vae = VAEConfig(patch_nums=patch_nums)
    var = VARConfig(depth=depth, patch_nums=patch_nums, shared_aln=shared_aln)
    return ModelPreset(vae, var, f"official VAR-d{depth} ({16 * patch_nums[-1]} px)")


MODEL_PRESETS: dict[str, Callable[[], ModelPreset]] = {
    "var-d16": lambda: _official(16),
    "var-d20": lambda: _official(20),
    "var-d24": lambda: _official(24),
    "var-d30": lambda: _official(30),
    "var-d36": lambda: _official(36, PATCH_NUMS_512, shared_aln=True),
    "builtin": _builtin,
    "tiny": lambda: ModelPreset(
        VAEConfig(V=32, Cvae=8, ch=32, ch_mult=(1, 2), patch_nums=(1, 2, 4)),
        VARConfig(depth=4, embed_dim=64, num_heads=4, num_classes=10, V=32, Cvae=8,
                  patch_nums=(1, 2, 4), drop_path_rate=0.0),
        "test-sized model: depth 4, width 64, 4 heads, vocab 32, scales (1, 2, 4)",
    ),
}


def model_preset(name: str) -> ModelPreset:
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}.")
    return MODEL_PRESETS[name]()
