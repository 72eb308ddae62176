"""One sampling configuration: the official VAR sampling defaults live here and nowhere else.

`SamplingConfig` is what every sampler call, command and benchmark builds its settings from;
`variant.cli.common.add_sampling_args` / `sampling_from_args` are its command-line form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..units import dtype_name, parse_dtype
from . import levers as _declared  # noqa: F401  (registers the levers)
from . import weight_lever as _weight_lever  # noqa: F401  (after them: --weights)
from .lever import LEVERS, read_levers

RNG_STREAMS = ("batch", "per-image")  # the first is the default (the official stream)


def guided_rows(batch: int, cfg: float | bool) -> int:
    """Rows of one transformer pass: the batch, doubled when classifier-free guidance is on."""
    return batch * (2 if cfg else 1)


@dataclass(frozen=True, kw_only=True, init=False)
class SamplingConfig:
    """How to draw tokens. Defaults are the official VAR demo's (cfg 1.5, top-k 900, top-p 0.96).

    - `cfg`: classifier-free guidance strength; 0 turns guidance (and the doubled batch) off.
    - `top_k` / `top_p`: 0 turns the filter off.
    - `more_smooth`: the official Gumbel-softmax smoothing of the next-scale input (visual only).
    - `dtype`: compute dtype, `'fp32' | 'bf16' | 'fp16'` (a `torch.dtype` is accepted too).
    - `seed`: seeds the per-call generator; None uses torch's global RNG.
    - `rng`: 'batch' (the official stream: one generator for the whole call) or 'per-image'
      (image i of a call draws from its own generator, derived from (seed, i), so its tokens do
      not depend on the other images of the call; `variant serve` uses it).
    - `compile`: run each scale's step under `torch.compile` (variant/compiling.py).

    Every declared inference lever (sampling/levers.py) is a keyword too, read as an attribute
    (`SamplingConfig(**{name: value}).name`); off by default. `lever_values` holds the ones set
    to something other than their neutral value, in declaration order.
    """

    cfg: float = 1.5
    top_k: int = 900
    top_p: float = 0.96
    more_smooth: bool = False
    dtype: str = "fp32"
    seed: int | None = None
    rng: str = "batch"
    compile: bool = False
    lever_values: tuple[tuple[str, Any], ...] = ()

    def __init__(self, *, lever_values: tuple = (), **given) -> None:
        base = {f.name for f in dataclasses.fields(self)} - {"lever_values"}
        levers = read_levers({**dict(lever_values),
                              **{k: v for k, v in given.items() if k not in base}})
        for name in base:
            object.__setattr__(self, name, given.get(name, getattr(type(self), name)))
        object.__setattr__(self, "lever_values", tuple(
            (n, levers[n]) for n in LEVERS if n in levers and levers[n] != LEVERS[n].neutral))
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        lever = LEVERS.get(name) if not name.startswith("_") else None
        if lever is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return dict(self.__dict__.get("lever_values", ())).get(name, lever.neutral)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.rng not in RNG_STREAMS:
            raise ValueError(f"rng must be one of {', '.join(RNG_STREAMS)}, got {self.rng!r}.")
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0 or self.cfg < 0:
            raise ValueError(f"need top_k >= 0, 0 <= top_p <= 1 and cfg >= 0; got top_k="
                             f"{self.top_k}, top_p={self.top_p}, cfg={self.cfg}.")

    @property
    def torch_dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype)

    @property
    def use_cfg(self) -> bool:
        """Whether the unconditional rows run (guidance would be a no-op at cfg 0)."""
        return self.cfg != 0

    def rows(self, batch: int) -> int:
        """Rows in each transformer pass: the batch, doubled by classifier-free guidance."""
        return guided_rows(batch, self.use_cfg)

    @property
    def levers(self) -> dict[str, Any]:
        """Every lever's setting by name (neutral ones included)."""
        return {name: getattr(self, name) for name in LEVERS}

    def replace(self, **changes) -> SamplingConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as JSON values; levers only when set (so records written before the
        levers existed, e.g. sample folders, still compare equal)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "lever_values" and (f.name != "compile" or self.compile)}
        out.update((n, LEVERS[n].to_json(v)) for n, v in self.lever_values)
        if out["rng"] == RNG_STREAMS[0]:  # records written before per-image streams compare equal
            del out["rng"]
        return out

    def cli_args(self) -> list[str]:
        """The `variant sample` flags that reproduce these settings."""
        args = ["--cfg", f"{self.cfg:g}", "--top-k", str(self.top_k), "--top-p", f"{self.top_p:g}",
                "--dtype", self.dtype]
        if self.more_smooth:
            args.append("--more-smooth")
        if self.compile:
            args.append("--compile")
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        for name, value in self.lever_values:
            args += [LEVERS[name].flag, LEVERS[name].show(value)]
        if self.rng != RNG_STREAMS[0]:
            args += ["--rng", self.rng]
        return args
