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
from .levers import Levers, check_guide_class, parse_kv_keep, parse_prune


def guided_rows(batch: int, cfg: float | bool) -> int:
    """Rows of one transformer pass: the batch, doubled when classifier-free guidance is on."""
    return batch * (2 if cfg else 1)


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How to draw tokens. Defaults are the official VAR demo's (cfg 1.5, top-k 900, top-p 0.96).

    - `cfg`: classifier-free guidance strength; 0 turns guidance (and the doubled batch) off.
    - `top_k` / `top_p`: 0 turns the filter off.
    - `more_smooth`: the official Gumbel-softmax smoothing of the next-scale input (visual only).
    - `dtype`: compute dtype, `'fp32' | 'bf16' | 'fp16'` (a `torch.dtype` is accepted too).
    - `seed`: seeds the per-call generator; None uses torch's global RNG.
    - `compile`: run each scale's step under `torch.compile` (variant/compiling.py).

    The inference levers (sampling/levers.py; all off by default, scales 0-based):
    - `cfg_stop`: first scale sampled from the conditional logits only (None: never).
    - `guide_plan`: the guiding rows' depth plan (a `DepthPlan` or a plan spec such as 'd2';
      None: the plan itself); `guide_class`: 'null' (classifier-free) or 'same' (autoguidance).
    - `prune`: (keep, first pruned scale) or '0.5@8'; `kv_keep`: (first, recent) or '1,2'.
    """

    cfg: float = 1.5
    top_k: int = 900
    top_p: float = 0.96
    more_smooth: bool = False
    dtype: str = "fp32"
    seed: int | None = None
    cfg_stop: int | None = None
    guide_plan: Any = None
    guide_class: str = "null"
    prune: tuple[float, int] | None = None
    kv_keep: tuple[int, int] | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0 or self.cfg < 0:
            raise ValueError(f"need top_k >= 0, 0 <= top_p <= 1 and cfg >= 0; got top_k="
                             f"{self.top_k}, top_p={self.top_p}, cfg={self.cfg}.")
        object.__setattr__(self, "prune", parse_prune(self.prune))
        object.__setattr__(self, "kv_keep", parse_kv_keep(self.kv_keep))
        check_guide_class(self.guide_class)
        if self.cfg_stop is not None and (not isinstance(self.cfg_stop, int)
                                          or isinstance(self.cfg_stop, bool) or self.cfg_stop < 0):
            raise ValueError(f"cfg_stop must be a 0-based scale index (an int >= 0), got "
                             f"{self.cfg_stop!r}; e.g. cfg_stop=8 leaves the last two of 10 "
                             "scales unguided.")
        if isinstance(self.guide_plan, str) and not self.guide_plan.strip():
            raise ValueError("guide_plan is empty: give a plan spec such as 'd2', or None.")

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

    def levers(self, plan, patch_nums, resolve_plan) -> Levers | None:
        """This call's levers under `plan` on a model with these scales, normalised: None when
        every lever is neutral, so the plain sampler runs (sampling/levers.py).
        `resolve_plan` turns `guide_plan` into a checked plan (a model's `resolve_plan`)."""
        guide = None if self.guide_plan is None else resolve_plan(self.guide_plan)
        return Levers.build(num_scales=len(patch_nums), patch_nums=patch_nums, plan=plan,
                            guided=self.use_cfg, cfg_stop=self.cfg_stop, guide_plan=guide,
                            guide_class=self.guide_class, prune=self.prune,
                            kv_keep=self.kv_keep)

    @property
    def guide_plan_name(self) -> str | None:
        plan = self.guide_plan
        return plan if plan is None or isinstance(plan, str) else plan.name

    def replace(self, **changes) -> SamplingConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as JSON values; levers only when set (so records written before the
        levers existed, e.g. sample folders, still compare equal)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in _OMITTED_AT_DEFAULT
               or getattr(self, f.name) != _OMITTED_AT_DEFAULT[f.name]}
        if "guide_plan" in out:
            out["guide_plan"] = self.guide_plan_name
        for key in ("prune", "kv_keep"):
            if key in out:
                out[key] = list(out[key])
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
        if self.cfg_stop is not None:
            args += ["--cfg-stop", str(self.cfg_stop)]
        if self.guide_plan is not None:
            args += ["--guide-plan", self.guide_plan_name]
        if self.guide_class != "null":
            args += ["--guide-class", self.guide_class]
        if self.prune is not None:
            args += ["--prune", f"{self.prune[0]!r}@{self.prune[1]}"]
        if self.kv_keep is not None:
            args += ["--kv-keep", f"{self.kv_keep[0]},{self.kv_keep[1]}"]
        return args


_LEVER_DEFAULTS = {"cfg_stop": None, "guide_plan": None, "guide_class": "null", "prune": None,
                   "kv_keep": None}
# Omitted from `to_dict` at these values: records written before the field existed compare equal.
_OMITTED_AT_DEFAULT = {**_LEVER_DEFAULTS, "compile": False}
