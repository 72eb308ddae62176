"""Sampling configurations: a depth plan plus inference levers, named by one spec string.

    d8                        a plan spec (sampling/plan.py)
    d8+cfgstop8               guidance off from scale 8 on (0-based: the last two of 10 scales)
    full+guide=d2             classifier-free guidance whose unconditional rows run d2
    full+autoguide=d2         guided by d2 with the image's own class (autoguidance)
    d8+prune0.5@8             at scales >= 8 half of the positions run the layers
    d8+kv1,2                  KV retention: every scale attends to scale 0, the 2 before it, itself
    d8+kv8, d8+kvfp8@5        KV precision: keys/values stored in int8 / fp8 (from scale 5 on)
    d8+cfgstop8+prune0.5@8    levers combine, in any order

Accepted wherever a plan is (`variant sample --plan`, `eval`/`bench`/`plan --plans`). The
command-line lever flags (`--cfg-stop`, `--guide-plan`, `--guide-class`, `--prune`,
`--kv-keep`, `--kv-precision`) apply to every configuration; a lever given both ways must agree.
A configuration's `name` is its canonical spec: the plan's name, then the levers that change
anything, in the order above (`Configuration.resolve(name, ...)` gives back the same configuration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .lever import LEVERS, PlanShape, spec_syntax
from .levers import Levers
from .plan import DepthPlan
from .settings import SamplingConfig

EXAMPLE = "+".join(["d8", *(lever.example.split("+", 1)[1] for lever in LEVERS.values()
                            if lever.example.startswith("d8+"))][:3])


def _help() -> str:
    guided = next(lv.example for lv in LEVERS.values() if "guide=" in lv.example)
    return (f"levers are {spec_syntax()} (scales 0-based), joined to a plan by '+', e.g. "
            f"{EXAMPLE} or {guided}")


def parse_configuration(spec: str) -> tuple[str, dict]:
    """Split a configuration spec into its plan spec and its lever settings (unresolved)."""
    plan_spec, *parts = [p.strip() for p in str(spec).split("+")]
    if not plan_spec:
        raise ValueError(f"configuration {spec!r} has no plan before its levers: start with a "
                         f"plan, e.g. {EXAMPLE}.")
    levers: dict = {}
    for part in parts:
        try:
            given = next((g for lever in LEVERS.values()
                          if (g := lever.parse_part(part)) is not None), None)
            if given is None:
                raise ValueError(f"unknown lever {part!r}")
            first = next(iter(given))
            if first in levers:
                raise ValueError(f"{first} is set twice ({part!r} repeats it); keep one")
            levers.update(given)
        except ValueError as err:
            reason = str(err).rstrip(".")
            raise ValueError(f"cannot read configuration {spec!r}: {reason}; "
                             f"{_help()}.") from None
    return plan_spec, levers


@dataclass(frozen=True)
class Configuration:
    """A plan, the settings it samples with (levers included) and its normalised levers: what
    one sampling call runs, resolved and checked once (`resolve`, `of`)."""

    plan: DepthPlan
    settings: SamplingConfig
    levers: Levers

    @property
    def name(self) -> str:
        return "+".join([self.plan.name, *self.levers.spec_parts()])

    @classmethod
    def resolve(cls, spec: str, depth: int, patch_nums: Sequence[int], settings: SamplingConfig,
                bridge: int | None = None) -> Configuration:
        """Parse `spec` for a model of `depth` layers and these scales; its levers are merged
        into `settings` (from the command's flags); plans named in it use `bridge`."""
        shape = PlanShape(depth, tuple(patch_nums), bridge)
        plan_spec, given = parse_configuration(spec)
        plan = DepthPlan.from_spec(plan_spec, depth, len(patch_nums), bridge)
        merged = {}
        for key, value in given.items():
            lever = LEVERS[key]
            value, flag = lever.resolve(value, shape), lever.resolve(getattr(settings, key), shape)
            if flag != lever.neutral and flag != value:
                raise ValueError(f"configuration {spec!r} sets {key} to {_show(value)} but the "
                                 f"command's flags set it to {_show(flag)}; give it one way, "
                                 f"in the spec (e.g. {EXAMPLE}) or by its flag.")
            merged[key] = value
        try:
            return cls.build(plan, settings.replace(**merged), shape)
        except ValueError as err:
            raise ValueError(f"configuration {spec!r}: {str(err).rstrip('.')}. (A configuration "
                             f"spec looks like {EXAMPLE}.)") from None

    @classmethod
    def build(cls, plan: DepthPlan, settings: SamplingConfig, shape: PlanShape) -> Configuration:
        """`plan` (checked against `shape`) with the levers of `settings`, resolved and
        normalised once."""
        plan.check(shape.depth, shape.num_scales)
        values = {name: LEVERS[name].resolve(value, shape)
                  for name, value in settings.lever_values}
        settings = settings.replace(**values)
        return cls(plan, settings, Levers.build(values, plan, shape.patch_nums, settings.use_cfg))

    @classmethod
    def of(cls, model, plan: DepthPlan | str | None = None,
           settings: SamplingConfig | None = None) -> Configuration:
        """What `generate` runs on `model` (a `ScaleModel`): `plan` (None: the full network; a
        spec may carry levers) with `settings` (default: the official ones)."""
        settings = settings or SamplingConfig()
        shape = PlanShape(model.depth, tuple(model.patch_nums))
        if isinstance(plan, str):
            return cls.resolve(plan, shape.depth, shape.patch_nums, settings)
        if plan is None:
            plan = DepthPlan.full(shape.depth, shape.num_scales)
        elif not isinstance(plan, DepthPlan):
            raise ValueError(f"plan must be a variant.DepthPlan, a plan spec or None, got "
                             f"{type(plan).__name__}.")
        return cls.build(plan, settings, shape)


def resolve_configurations(specs: Sequence[str], depth: int, patch_nums: Sequence[int],
                           settings: SamplingConfig,
                           bridge: int | None = None) -> list[Configuration]:
    """Each spec resolved, duplicates (same plan and levers) dropped, order kept."""
    out, seen = [], set()
    for spec in specs:
        config = Configuration.resolve(spec, depth, patch_nums, settings, bridge)
        key = (config.plan.layer_sets, config.levers)
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out


def folder_name(name: str) -> str:
    """A file or folder name for a configuration spec: the spec itself when it has only letters,
    digits and @.,=+-_ (every family name does), else 'custom-' and a hash (JSON plans)."""
    if name and all(ch.isalnum() or ch in "@.,=+-_" for ch in name):
        return name
    return "custom-" + hashlib.sha1(name.encode()).hexdigest()[:10]


def _show(value) -> str:
    return value.name if isinstance(value, DepthPlan) else repr(value)
