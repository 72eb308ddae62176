"""Depth plans: which transformer layers run at which scale.

A `DepthPlan` holds one sorted tuple of layer indices per scale. The paper's plan runs every layer
in the first `bridge` scales (the bridge zone) and the equidistant subset
`I_d = {floor(i * (depth - 1) / (d - 1)) : i = 0 .. d - 1}` in the remaining scales (the flexible
zone).
Any per-scale list of layer sets is allowed; the teacher-forced forward and the KV-cached sampler
both read the plan, so a plan means the same network in training and at sampling time.

Families and names. This module is the one home of the plan families and of their names: every
plan's `name` is a spec string, and `DepthPlan.from_spec(plan.name, depth, K)` rebuilds an equal
plan.

    full          every layer at every scale                            DepthPlan.full
    d8            the paper's plan with the default bridge              DepthPlan.paper
    d8@bridge5    the paper's plan with a bridge zone of 5 scales       DepthPlan.paper
    d8@r7-r10     I_8 at scales 7..10 only (1-based, inclusive; `d8@r5`
                  for one scale), the full network elsewhere            DepthPlan.subnet_on_scales
    d8.8.4.4.2    one depth per scale, I_d at each (K numbers; a
                  paper-shaped list is named as the paper's plan)       DepthPlan.per_scale
    [[0,1],[1]]   any per-scale layer lists (compact JSON)              DepthPlan(layer_sets)

The default bridge is the paper's N = 6 of K = 10 scales scaled to K: `round(0.6 * K)`, at least 1
(`default_bridge`). A plan whose every scale runs every layer is named `full` whichever family
built it; `d8` and `8` parse alike, and so do `d30` and `full` on a 30-layer model.

Accounting here is structural, in "token-layers": one token processed by one layer. FLOPs and
bytes come from `models.cost.CostModel`. Legend (the package's, see variant/__init__.py):
K scales, L tokens; the model's depth is spelled out (the paper's D).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

# The subnet depths of the paper (of depth 30): the default plans of `bench`, `eval`, `plan`.
PAPER_SUBNET_DEPTHS = (16, 8, 4, 2)
# The paper's bridge zone, N = 6 of K = 10 scales at 256 px.
BRIDGE_FRACTION = 0.6

_SPEC = re.compile(r"^d?(\d{1,9})(?:@(?:bridge(\d{1,9})|r(\d{1,9})(?:-r?(\d{1,9}))?))?$",
                   re.IGNORECASE)
_DEPTHS = re.compile(r"^d(\d{1,9}(?:\.\d{1,9})+)$", re.IGNORECASE)
_RANGE = re.compile(r"^\s*r?(\d{1,9})\s*(?:[-–:]\s*r?(\d{1,9}))?\s*$", re.IGNORECASE)
_SPEC_HELP = ("use 'full', a subnet depth such as 'd8' (the paper's plan, default bridge), "
              "'d8@bridge5' (bridge zone of 5 scales), 'd8@r7-r10' (the subnet at scales 7-10 "
              "only), 'd8.8.4.4.2' (one depth per scale) or a JSON list with one layer list per "
              "scale")


def equidistant_layers(total_depth: int, subnet_depth: int) -> list[int]:
    """The paper's layer set I_d: d layers spread evenly over 0 .. depth-1, keeping both ends."""
    depth, d = int(total_depth), int(subnet_depth)
    if depth < 1:
        raise ValueError(f"total_depth must be >= 1, got {depth}.")
    if not 1 <= d <= depth:
        raise ValueError(f"subnet_depth must be in 1..{depth} (the model has {depth} layers), "
                         f"got {d}.")
    if d == 1:
        return [0]
    return [(i * (depth - 1)) // (d - 1) for i in range(d)]


def default_bridge(num_scales: int) -> int:
    """The paper's bridge zone, N = 6 of K = 10 scales, scaled to K scales (at least 1)."""
    return max(1, round(BRIDGE_FRACTION * num_scales))


def resolve_bridge(bridge: int | None, num_scales: int) -> int:
    """`bridge`, or the default for K scales when it is None; ValueError outside 0..K."""
    if bridge is None:
        return default_bridge(num_scales)
    if not 0 <= bridge <= num_scales:
        raise ValueError(
            f"bridge must be in 0..{num_scales} (number of leading scales that run the full "
            f"network), got {bridge}."
        )
    return int(bridge)


def default_subnet_depths(total_depth: int) -> list[int]:
    """The paper's subnet depths that fit a model (shallower than its depth)."""
    return [d for d in PAPER_SUBNET_DEPTHS if d < total_depth]


def default_plan_specs(total_depth: int) -> list[str]:
    """The plans a command compares by default: full, then the paper's subnets that fit."""
    return ["full"] + [_paper_name(d, None) for d in default_subnet_depths(total_depth)]


def read_scale_range(text: str) -> tuple[int, int]:
    """'7-10', 'r7-r10', '2:4' or '5' -> (first, last), 1-based and inclusive (syntax only)."""
    m = _RANGE.match(str(text))
    if m is None:
        raise ValueError(f"cannot read the scale range {text!r}: use FIRST-LAST with 1-based "
                         "scales, e.g. 1-3 or 7-10 (or a single scale, e.g. 5).")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def check_scale_range(scale_range: tuple[int, int], num_scales: int) -> tuple[int, int]:
    first, last = scale_range
    if not 1 <= first <= last <= num_scales:
        raise ValueError(f"scale range {range_label(scale_range)!r} must lie within "
                         f"1..{num_scales} (this model has {num_scales} scales) with first <= "
                         "last.")
    return int(first), int(last)


def range_label(scale_range: tuple[int, int]) -> str:
    """(7, 10) -> 'r7-r10', (5, 5) -> 'r5': the paper's names of scale ranges."""
    first, last = scale_range
    return f"r{first}" if first == last else f"r{first}-r{last}"


def _paper_name(subnet_depth: int, bridge: int | None) -> str:
    return f"d{subnet_depth}" if bridge is None else f"d{subnet_depth}@bridge{bridge}"


def _layers_name(layer_sets: Sequence[Sequence[int]]) -> str:
    return json.dumps([list(s) for s in layer_sets], separators=(",", ":"))


@dataclass(frozen=True)
class PlanSpec:
    """A plan spec read without a model: its family and numbers (`parse_spec`)."""

    family: str  # "full", "paper", "range", "depths" or "layers"
    subnet_depth: int | None = None  # paper, range; depths: the shallowest
    bridge: int | None = None  # paper; None: the default (or the caller's) bridge
    scale_range: tuple[int, int] | None = None  # range: 1-based, inclusive
    layer_sets: tuple[tuple[int, ...], ...] | None = None  # layers
    depths: tuple[int, ...] | None = None  # depths: one per scale

    def build(self, total_depth: int, num_scales: int, bridge: int | None = None) -> DepthPlan:
        """The plan on a model of `total_depth` layers and K scales; `bridge` applies to a
        bare 'dN' spec."""
        if self.family == "full":
            return DepthPlan.full(total_depth, num_scales)
        if self.family == "layers":
            return DepthPlan(self.layer_sets, total_depth)
        if self.family == "depths":
            return DepthPlan.per_scale(total_depth, self.depths, num_scales)
        if self.family == "range":
            return DepthPlan.subnet_on_scales(total_depth, self.subnet_depth, self.scale_range,
                                              num_scales)
        if self.bridge is not None and bridge is not None and self.bridge != bridge:
            raise ValueError(f"plan {_paper_name(self.subnet_depth, self.bridge)!r} names bridge "
                             f"{self.bridge} but bridge {bridge} was also given (--bridge); "
                             "drop one of them.")
        chosen = self.bridge if self.bridge is not None else bridge
        return DepthPlan.paper(total_depth, self.subnet_depth, chosen, num_scales)


def parse_spec(spec: str) -> PlanSpec:
    """Read a plan spec (see the module docstring) without binding it to a model."""
    text = str(spec).strip()
    if text.lower() == "full":
        return PlanSpec("full")
    if text.startswith("["):
        return PlanSpec("layers", layer_sets=_json_layer_sets(spec, text))
    m = _DEPTHS.match(text)
    if m is not None:
        depths = tuple(int(d) for d in m.group(1).split("."))
        return PlanSpec("depths", min(depths), depths=depths)
    m = _SPEC.match(text)
    if m is None:
        raise ValueError(f"cannot read plan {spec!r}: {_SPEC_HELP}.")
    depth, bridge, first, last = m.groups()
    if first is not None:
        return PlanSpec("range", int(depth), scale_range=(int(first), int(last or first)))
    return PlanSpec("paper", int(depth), None if bridge is None else int(bridge))


def _layer_index(value, scale_index: int) -> int:
    """An integer layer index (numpy and torch integers too); 7.9, '7' and True are refused."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        shown = json.dumps(value) if isinstance(value, (str, float, bool)) else repr(value)
        raise ValueError(f"scale {scale_index} lists {shown}, which is not a layer index (whole "
                         "numbers only).") from None


def _json_layer_sets(spec: str, text: str) -> tuple[tuple[int, ...], ...]:
    """A JSON plan's layer sets; only whole-number indices (7.9, "07" and true are refused, not
    read as 7 and 1)."""
    example = "give one list of layer indices per scale, e.g. [[0,1,2,3],[0,3],[0,3]]"
    try:
        sets = json.loads(text, parse_constant=lambda name: name)
    except ValueError:
        raise ValueError(f"cannot read plan {spec!r} as JSON: {example}.") from None
    if not isinstance(sets, list) or not all(isinstance(s, list) for s in sets):
        raise ValueError(f"plan {spec!r} is not a list of lists: {example}.")
    try:
        return tuple(tuple(_layer_index(i, k) for i in s) for k, s in enumerate(sets))
    except ValueError as err:
        raise ValueError(f"plan {spec!r}: {str(err).rstrip('.')}; {example}.") from None


@dataclass(frozen=True, eq=True)
class DepthPlan:
    """Per-scale layer sets; `total_depth` (optional) pins the plan to models of that depth.

    `name` is the plan's spec (module docstring); by default the JSON of its layer sets. The
    family constructors below set it.
    """

    layer_sets: tuple[tuple[int, ...], ...]
    total_depth: int | None = None
    name: str = ""

    def __init__(self, layer_sets: Sequence[Sequence[int]], total_depth: int | None = None,
                 name: str | None = None):
        sets = tuple(tuple(_layer_index(i, k) for i in s) for k, s in enumerate(layer_sets))
        object.__setattr__(self, "layer_sets", sets)
        object.__setattr__(self, "total_depth", None if total_depth is None else int(total_depth))
        object.__setattr__(self, "name", name or _layers_name(sets))
        self._validate()

    def _validate(self) -> None:
        if not self.layer_sets:
            raise ValueError("a DepthPlan needs one layer set per scale; got no scales.")
        for k, s in enumerate(self.layer_sets):
            if not s:
                raise ValueError(
                    f"scale {k} has an empty layer set; every scale must run at least one layer "
                    "(e.g. DepthPlan.paper(depth, 2, ...) runs two)."
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

    # ---------------------------------------------------------------- families
    @classmethod
    def full(cls, total_depth: int, num_scales: int) -> DepthPlan:
        _check_counts(total_depth, num_scales)
        layers = tuple(range(total_depth))
        return cls([layers] * num_scales, total_depth, name="full")

    @classmethod
    def paper(cls, total_depth: int, subnet_depth: int, bridge: int | None,
              num_scales: int) -> DepthPlan:
        """Full network for scales 0..bridge-1, equidistant `subnet_depth` layers afterwards.

        `bridge` None: the default bridge (`default_bridge`).
        """
        _check_counts(total_depth, num_scales)
        bridge = resolve_bridge(bridge, num_scales)
        sub = tuple(equidistant_layers(total_depth, subnet_depth))
        full = tuple(range(total_depth))
        sets = [full] * bridge + [sub] * (num_scales - bridge)
        if sub == full or bridge == num_scales:
            name = "full"
        else:
            name = _paper_name(subnet_depth, None if bridge == default_bridge(num_scales)
                               else bridge)
        return cls(sets, total_depth, name=name)

    @classmethod
    def subnet_on_scales(cls, total_depth: int, subnet_depth: int,
                         scale_range: tuple[int, int], num_scales: int) -> DepthPlan:
        """I_d at the scales of `scale_range` (1-based, inclusive), the full network elsewhere:
        the plans of the scale-depth asymmetry study."""
        _check_counts(total_depth, num_scales)
        first, last = check_scale_range(scale_range, num_scales)
        full, sub = tuple(range(total_depth)), tuple(equidistant_layers(total_depth, subnet_depth))
        sets = [sub if first <= k + 1 <= last else full for k in range(num_scales)]
        name = "full" if sub == full else f"d{subnet_depth}@{range_label((first, last))}"
        return cls(sets, total_depth, name=name)

    @classmethod
    def per_scale(cls, total_depth: int, depths: Sequence[int], num_scales: int) -> DepthPlan:
        """I_d with d = `depths[k]` at scale k: any per-scale depth. Its name is 'full' or the
        paper's plan when the depths have that shape (full depth, then one subnet depth), else
        'd' and the depths joined by dots (e.g. 'd8.8.8.4.4.2')."""
        _check_counts(total_depth, num_scales)
        depths = [int(d) for d in depths]
        if len(depths) != num_scales:
            raise ValueError(f"per-scale plan {'.'.join(map(str, depths))!r} gives {len(depths)} "
                             f"depths for a model of {num_scales} scales; give one per scale.")
        sets = [tuple(equidistant_layers(total_depth, d)) for d in depths]
        bridge = next((k for k, d in enumerate(depths) if d != total_depth), num_scales)
        if bridge == num_scales:
            name = "full"
        elif bridge > 0 and len(set(depths[bridge:])) == 1:
            name = _paper_name(depths[-1], None if bridge == default_bridge(num_scales)
                               else bridge)
        else:
            name = "d" + ".".join(map(str, depths))
        return cls(sets, total_depth, name=name)

    @classmethod
    def from_spec(cls, spec: str, total_depth: int, num_scales: int,
                  bridge: int | None = None) -> DepthPlan:
        """Parse a plan spec (module docstring) for a model of `total_depth` layers and K scales.

        `bridge` is the bridge zone of a bare 'd8' (None: the default); 'd8@bridge5' names its
        own.
        """
        plan = parse_spec(spec).build(total_depth, num_scales, bridge)
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

    @property
    def depth(self) -> int:
        """The model depth: `total_depth`, or the deepest layer used + 1 when not pinned."""
        return self.total_depth or self.max_layer + 1

    @cached_property
    def bridge(self) -> int:
        """Number of leading scales that run every layer of the model (the bridge zone)."""
        return self.bridge_for(self.depth)

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
        """Raise a ValueError unless this plan runs on `total_depth` layers and K scales."""
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

    # ---------------------------------------------------------------- token-layers
    def token_layers(self, patch_nums: Sequence[int]) -> int:
        """Tokens processed summed over layers (the transformer's work, up to a constant)."""
        self._check_patch_nums(patch_nums)
        return sum(p * p * len(s) for p, s in zip(patch_nums, self.layer_sets))

    def context_tokens(self, patch_nums: Sequence[int], layer: int, scale_index: int) -> int:
        """Tokens `layer` attends to at `scale_index`: its scales up to and including this one."""
        return sum(patch_nums[k] ** 2 for k in self.scales_of_layer(layer) if k <= scale_index)

    def kv_token_layers(self, patch_nums: Sequence[int]) -> list[int]:
        """Per layer: the tokens it must keep in its KV cache (all its scales but its last)."""
        self._check_patch_nums(patch_nums)
        kept = []
        for layer in range(self.depth):
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
        depth = self.depth
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
        """The plan of `to_dict`; a stored name that is not the spec of these layers (names
        written before the naming scheme, e.g. 'd8/bridge6') gives way to the JSON name."""
        plan = cls(data["layer_sets"], data.get("total_depth"))
        name = data.get("name")
        if plan.total_depth is None or not name or name == plan.name:
            return plan
        try:
            named = cls.from_spec(name, plan.total_depth, plan.num_scales)
        except ValueError:
            return plan
        return named if named.layer_sets == plan.layer_sets else plan

    def describe(self) -> str:
        return f"DepthPlan({self.name}, {len(self.layer_sets)} scales, bridge={self.bridge})"


def paper_family(total_depth: int, num_scales: int, subnet_depths: Sequence[int],
                 bridge: int | None = None) -> list[DepthPlan]:
    """The full plan, then the paper's plan of each subnet depth (`bridge` None: default)."""
    return [DepthPlan.full(total_depth, num_scales)] + [
        DepthPlan.paper(total_depth, d, bridge, num_scales) for d in subnet_depths]


def _check_counts(total_depth: int, num_scales: int) -> None:
    if total_depth < 1:
        raise ValueError(f"total_depth must be >= 1, got {total_depth}.")
    if num_scales < 1:
        raise ValueError(f"num_scales must be >= 1, got {num_scales}.")
