"""Sampling configurations: a depth plan plus inference levers, named by one spec string.

    d8                        a plan spec (sampling/plan.py)
    d8+cfgstop8               guidance off from scale 8 on (0-based: the last two of 10 scales)
    full+guide=d2             classifier-free guidance whose unconditional rows run d2
    full+autoguide=d2         guided by d2 with the image's own class (autoguidance)
    d8+prune0.5@8             at scales >= 8 half of the positions run the layers
    d8+kv1,2                  KV retention: every scale attends to scale 0, the 2 before it, itself
    d8+cfgstop8+prune0.5@8    levers combine, in any order

Accepted wherever a plan is (`variant sample --plan`, `eval`/`bench`/`plan --plans`). The
command-line lever flags (`--cfg-stop`, `--guide-plan`, `--guide-class`, `--prune`,
`--kv-keep`) apply to every configuration; a lever given both ways must agree. A configuration's
`name` is its canonical spec: the plan's name, then the levers that change anything, in the order
above (`Configuration.resolve(name, ...)` gives back the same configuration).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .levers import Levers, parse_kv_keep, parse_prune
from .settings import SamplingConfig
from .plan import DepthPlan

EXAMPLE = "d8+cfgstop8+prune0.5@8"
_HELP = ("levers are cfgstopK, guide=PLAN, autoguide=PLAN, pruneKEEP@SCALE and kvFIRST,RECENT "
         f"(scales 0-based), joined to a plan by '+', e.g. {EXAMPLE} or full+autoguide=d2")
_CFG_STOP = re.compile(r"^cfgstop(\d+)$", re.IGNORECASE)
_GUIDE = re.compile(r"^(auto)?guide=(.+)$", re.IGNORECASE)
_PRUNE = re.compile(r"^prune(.+)$", re.IGNORECASE)
_KV = re.compile(r"^kv(?:keep)?(\d+\s*,\s*\d+)$", re.IGNORECASE)


def parse_configuration(spec: str) -> tuple[str, dict]:
    """Split a configuration spec into its plan spec and its lever settings (unresolved)."""
    plan_spec, *parts = [p.strip() for p in str(spec).split("+")]
    if not plan_spec:
        raise ValueError(f"configuration {spec!r} has no plan before its levers: start with a "
                         f"plan, e.g. {EXAMPLE}.")
    levers: dict = {}

    def put(key: str, value, part: str) -> None:
        if key in levers:
            raise ValueError(f"{key} is set twice ({part!r} repeats it); keep one")
        levers[key] = value

    for part in parts:
        try:
            if m := _CFG_STOP.match(part):
                put("cfg_stop", int(m.group(1)), part)
            elif m := _GUIDE.match(part):
                put("guide_plan", m.group(2), part)
                levers["guide_class"] = "same" if m.group(1) else "null"
            elif m := _PRUNE.match(part):
                put("prune", parse_prune(m.group(1)), part)
            elif m := _KV.match(part):
                put("kv_keep", parse_kv_keep(m.group(1)), part)
            else:
                raise ValueError(f"unknown lever {part!r}")
        except ValueError as err:
            reason = str(err).rstrip(".")
            raise ValueError(f"cannot read configuration {spec!r}: {reason}; {_HELP}.") from None
    return plan_spec, levers


@dataclass(frozen=True)
class Configuration:
    """A plan, the settings it samples with (levers included) and its normalised levers."""

    plan: DepthPlan
    settings: SamplingConfig
    levers: Levers | None  # None: the plain sampler

    @property
    def name(self) -> str:
        parts = [] if self.levers is None else self.levers.spec_parts()
        return "+".join([self.plan.name, *parts])

    @classmethod
    def resolve(cls, spec: str, depth: int, patch_nums: Sequence[int], settings: SamplingConfig,
                bridge: int | None = None) -> Configuration:
        """Parse `spec` for a model of `depth` layers and these scales; its levers are merged
        into `settings` (from the command's flags); plans named in it use `bridge`."""
        K = len(patch_nums)
        plan_spec, given = parse_configuration(spec)
        plan = DepthPlan.from_spec(plan_spec, depth, K, bridge)
        merged = {}
        for key, value in given.items():
            flag = getattr(settings, key)
            if key == "guide_plan":
                value = DepthPlan.from_spec(value, depth, K, bridge)
                if flag is not None:
                    flag = flag if isinstance(flag, DepthPlan) else DepthPlan.from_spec(
                        flag, depth, K, bridge)
            if key == "guide_class" and "guide_plan" not in given:
                continue
            default = getattr(SamplingConfig(), key)
            if flag != default and flag != value:
                raise ValueError(f"configuration {spec!r} sets {key} to {_show(value)} but the "
                                 f"command's flags set it to {_show(flag)}; give it one way, "
                                 f"in the spec (e.g. {EXAMPLE}) or by its flag.")
            merged[key] = value
        settings = settings.replace(**merged)
        if isinstance(settings.guide_plan, str):
            settings = settings.replace(
                guide_plan=DepthPlan.from_spec(settings.guide_plan, depth, K, bridge))
        try:
            levers = settings.levers(plan, patch_nums, lambda p: p)
        except ValueError as err:
            raise ValueError(f"configuration {spec!r}: {str(err).rstrip('.')}. (A configuration "
                             f"spec looks like {EXAMPLE}.)") from None
        return cls(plan, settings, levers)


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
