"""Depth plans: which transformer layers run at which scale.

A `DepthPlan` holds one sorted tuple of layer indices per scale. The paper's plan runs every layer
in the first `bridge` scales (the bridge zone) and the equidistant subset
`I_d = {floor(i * (D - 1) / (d - 1)) : i = 0 .. d - 1}` in the remaining scales (the flexible zone).
Any per-scale list of layer sets is allowed; the teacher-forced forward and the KV-cached sampler
both read the plan, so a plan means the same network in training and at sampling time.

Accounting is in "token-layers": one token processed by one layer. Legend: K scales, D layers,
L tokens, C width, V vocab.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property


def equidistant_layers(total_depth: int, subnet_depth: int) -> list[int]:
    """The paper's layer set I_d: d layers spread evenly over 0 .. D-1, always keeping both ends."""
    D, d = int(total_depth), int(subnet_depth)
    if D < 1:
        raise ValueError(f"total_depth must be >= 1, got {D}.")
    if not 1 <= d <= D:
        raise ValueError(f"subnet_depth must be in 1..{D} (the model has {D} layers), got {d}.")
    if d == 1:
        return [0]
    return [(i * (D - 1)) // (d - 1) for i in range(d)]


@dataclass(frozen=True, eq=True)
class DepthPlan:
    """Per-scale layer sets; `total_depth` (optional) pins the plan to models of D layers."""

    layer_sets: tuple[tuple[int, ...], ...]
    total_depth: int | None = None
    name: str = "custom"

    def __init__(self, layer_sets: Sequence[Sequence[int]], total_depth: int | None = None,
                 name: str = "custom"):
        sets = tuple(tuple(int(i) for i in s) for s in layer_sets)
        object.__setattr__(self, "layer_sets", sets)
        object.__setattr__(self, "total_depth", None if total_depth is None else int(total_depth))
        object.__setattr__(self, "name", name)
        self._validate()

    def _validate(self) -> None:
        if not self.layer_sets:
            raise ValueError("a DepthPlan needs one layer set per scale; got no scales.")
        for k, s in enumerate(self.layer_sets):
            if not s:
                raise ValueError(
                    f"scale {k} has an empty layer set; every scale must run at least one layer "
                    "(e.g. DepthPlan.paper(D, 2, ...) runs two)."
                )
            if list(s) != sorted(s):
                raise ValueError(f"scale {k}: layers must be sorted ascending, got {list(s)}.")
            if len(set(s)) != len(s):
                raise ValueError(f"scale {k}: duplicate layers in {list(s)}.")
            if s[0] < 0:
                raise ValueError(f"scale {k}: negative layer index in {list(s)}.")
            if self.total_depth is not None and s[-1] >= self.total_depth:
                raise ValueError(
                    f"scale {k}: layer {s[-1]} is out of range for a {self.total_depth}-layer "
                    f"model (valid: 0..{self.total_depth - 1})."
                )

    # ---------------------------------------------------------------- constructors
    @classmethod
    def full(cls, total_depth: int, num_scales: int) -> DepthPlan:
        _check_counts(total_depth, num_scales)
        layers = tuple(range(total_depth))
        return cls([layers] * num_scales, total_depth, name="full")

    @classmethod
    def paper(cls, total_depth: int, subnet_depth: int, bridge: int, num_scales: int) -> DepthPlan:
        """Full network for scales 0..bridge-1, equidistant `subnet_depth` layers afterwards."""
        _check_counts(total_depth, num_scales)
        if not 0 <= bridge <= num_scales:
            raise ValueError(
                f"bridge must be in 0..{num_scales} (number of leading scales that run the full "
                f"network), got {bridge}."
            )
        sub = tuple(equidistant_layers(total_depth, subnet_depth))
        full = tuple(range(total_depth))
        sets = [full] * bridge + [sub] * (num_scales - bridge)
        name = "full" if subnet_depth == total_depth or bridge == num_scales else (
            f"d{subnet_depth}/bridge{bridge}")
        return cls(sets, total_depth, name=name)

    @classmethod
    def from_spec(cls, spec: str, total_depth: int, num_scales: int, bridge: int) -> DepthPlan:
        """Parse a CLI plan: 'full', 'd8' / '8' (paper plan), or a JSON list of layer lists."""
        spec = spec.strip()
        if spec in ("full", str(total_depth), f"d{total_depth}"):
            return cls.full(total_depth, num_scales)
        if spec.startswith("["):
            plan = cls(json.loads(spec), total_depth)
        else:
            digits = spec[1:] if spec.lower().startswith("d") else spec
            if not digits.isdigit():
                raise ValueError(
                    f"cannot read plan {spec!r}: use 'full', a subnet depth such as 'd8', or a "
                    "JSON list with one layer list per scale."
                )
            plan = cls.paper(total_depth, int(digits), bridge, num_scales)
        plan.check(total_depth, num_scales)
        return plan

    # ---------------------------------------------------------------- queries
    @property
    def num_scales(self) -> int:
        return len(self.layer_sets)

    def layers_at(self, scale_index: int) -> tuple[int, ...]:
        return self.layer_sets[scale_index]

    @cached_property
    def max_layer(self) -> int:
        return max(s[-1] for s in self.layer_sets)

    @cached_property
    def bridge(self) -> int:
        """Number of leading scales that run every layer of the model (the bridge zone)."""
        return self.bridge_for(self.total_depth or self.max_layer + 1)

    def bridge_for(self, depth: int) -> int:
        """Number of leading scales that run all `depth` layers of a model."""
        full = tuple(range(depth))
        n = 0
        while n < self.num_scales and self.layer_sets[n] == full:
            n += 1
        return n

    def scales_of_layer(self, layer: int) -> tuple[int, ...]:
        return tuple(k for k, s in enumerate(self.layer_sets) if layer in s)

    def is_full(self, total_depth: int) -> bool:
        full = tuple(range(total_depth))
        return all(s == full for s in self.layer_sets)

    def check(self, total_depth: int, num_scales: int) -> None:
        """Raise a ValueError if this plan cannot run on a model with D layers and K scales."""
        if self.total_depth is not None and self.total_depth != total_depth:
            raise ValueError(
                f"plan {self.name!r} was built for a {self.total_depth}-layer model but this model "
                f"has {total_depth} layers; rebuild it, e.g. DepthPlan.paper({total_depth}, ...)."
            )
        if self.num_scales != num_scales:
            raise ValueError(
                f"plan {self.name!r} has {self.num_scales} scales but the model has {num_scales}; "
                "give one layer set per scale."
            )
        if self.max_layer >= total_depth:
            raise ValueError(
                f"plan {self.name!r} uses layer {self.max_layer} but the model has only "
                f"{total_depth} layers (0..{total_depth - 1})."
            )

    # ---------------------------------------------------------------- accounting
    def token_layers(self, patch_nums: Sequence[int]) -> int:
        """Tokens processed summed over layers (the transformer's work, up to a constant)."""
        self._check_patch_nums(patch_nums)
        return sum(p * p * len(s) for p, s in zip(patch_nums, self.layer_sets))

    def kv_token_layers(self, patch_nums: Sequence[int]) -> list[int]:
        """Per layer: the tokens it must keep in its KV cache (all its scales but its last)."""
        self._check_patch_nums(patch_nums)
        depth = self.total_depth or self.max_layer + 1
        kept = []
        for layer in range(depth):
            scales = self.scales_of_layer(layer)
            kept.append(sum(patch_nums[k] ** 2 for k in scales[:-1]))
        return kept

    def kv_peak_token_layers(self, patch_nums: Sequence[int]) -> int:
        """Lean-cache bound: the largest number of token-layers of keys/values alive at once.

        While scale k runs layer l, the cache holds: the kept tokens of every layer that still
        has a later use, the tokens layer l has gathered so far, and scale k's new keys/values
        for layer l. Layers retire right after their last scale.
        """
        self._check_patch_nums(patch_nums)
        depth = self.total_depth or self.max_layer + 1
        scales_of = [self.scales_of_layer(layer) for layer in range(depth)]
        sizes = [p * p for p in patch_nums]
        peak = 0
        for k, layers in enumerate(self.layer_sets):
            for l_now in layers:
                total = 0
                for layer in range(depth):
                    own = scales_of[layer]
                    if not own or own[-1] < k or (own[-1] == k and layer < l_now):
                        continue  # retired (or never used)
                    done = [s for s in own if s < k or (s == k and layer < l_now)]
                    if own[-1] == k and layer == l_now:
                        done = [s for s in own if s <= k]  # kept tokens + the scale being run
                    total += sum(sizes[s] for s in done)
                peak = max(peak, total)
        return peak

    def flops_per_scale(self, patch_nums: Sequence[int], width: int, vocab: int = 0,
                        mlp_ratio: float = 4.0, cvae: int = 32,
                        include_head: bool = False) -> list[int]:
        """FLOPs (2 x multiply-adds) of each scale under this plan, attention included.

        With `include_head` the per-token word embedding and the vocab head are added too; they
        run once per token whatever the plan, so they dilute the speed-up.
        """
        self._check_patch_nums(patch_nums)
        C, hidden = width, round(width * mlp_ratio)
        per_token_layer = 2 * (3 * C * C + C * C + 2 * C * hidden)  # qkv, proj, fc1, fc2
        out = []
        for k, (p, layers) in enumerate(zip(patch_nums, self.layer_sets)):
            n, total = p * p, 0
            for layer in layers:
                ctx = sum(patch_nums[j] ** 2 for j in self.scales_of_layer(layer) if j <= k)
                total += n * per_token_layer + 2 * 2 * n * ctx * C  # QK^T and PV
            if include_head:
                total += n * (2 * C * vocab + 2 * cvae * C)
            out.append(total)
        return out

    def flops(self, patch_nums: Sequence[int], width: int, vocab: int = 0, mlp_ratio: float = 4.0,
              cvae: int = 32, include_head: bool = False) -> int:
        """Total FLOPs of the transformer under this plan (see `flops_per_scale`)."""
        return sum(self.flops_per_scale(patch_nums, width, vocab, mlp_ratio, cvae, include_head))

    def layers_not_nested_in(self, other: DepthPlan) -> list[int]:
        """Scales where this plan's layer set is not a subset of `other`'s."""
        return [k for k, (a, b) in enumerate(zip(self.layer_sets, other.layer_sets))
                if not set(a) <= set(b)]

    def _check_patch_nums(self, patch_nums: Sequence[int]) -> None:
        if len(patch_nums) != self.num_scales:
            raise ValueError(
                f"plan {self.name!r} has {self.num_scales} scales but {len(patch_nums)} patch "
                "sides were given."
            )

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return {"name": self.name, "total_depth": self.total_depth,
                "layer_sets": [list(s) for s in self.layer_sets]}

    @classmethod
    def from_dict(cls, data: dict) -> DepthPlan:
        return cls(data["layer_sets"], data.get("total_depth"), data.get("name", "custom"))

    def describe(self) -> str:
        return f"DepthPlan({self.name}, {len(self.layer_sets)} scales, bridge={self.bridge})"


def _check_counts(total_depth: int, num_scales: int) -> None:
    if total_depth < 1:
        raise ValueError(f"total_depth must be >= 1, got {total_depth}.")
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}.")
