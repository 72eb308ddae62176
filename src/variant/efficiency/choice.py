"""Choosing a configuration for a budget: one budget type, one chooser, two sources of costs.

    options = predicted_options(predictor, candidate_plans(...))   # efficiency.budget: predicted
    options = front_options(front, batch)                          # variant.front: measured
    choice = choose(Budget(max_kv=2**30), options)
    choice.chosen.spec, choice.cheaper, choice.better

An `Option` is a configuration with its costs for the batch the budget is meant for (latency in
seconds per batch, KV and memory in bytes; None where not known) and, when measured, its quality
(lower is better). Options without a quality are ranked by their order (the planner lists plans
from the most to the least capable). The chosen one is the best-ranked option within every limit,
ties broken by the cost the budget names first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..units import fmt_bytes

AXES = ("latency", "kv", "memory")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Limits on one sampling call: KV-cache bytes, peak memory bytes, seconds per batch."""

    max_kv: float | None = None
    max_memory: float | None = None
    max_latency: float | None = None

    def __post_init__(self) -> None:
        if not self.limits:
            raise ValueError("a budget needs at least one limit: KV bytes, memory bytes or "
                             "seconds per batch.")
        for axis, value in self.limits.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"the {axis} limit must be a positive finite number, got "
                                 f"{value!r}.")

    @property
    def limits(self) -> dict[str, float]:
        """axis -> limit, in the order latency, KV, memory (the first one orders neighbours)."""
        given = {"latency": self.max_latency, "kv": self.max_kv, "memory": self.max_memory}
        return {a: v for a, v in given.items() if v is not None}

    def over(self, costs: Mapping[str, float | None]) -> list[str]:
        """The limits `costs` exceed (or cannot be compared with), as readable phrases."""
        out = []
        for axis, limit in self.limits.items():
            cost = costs.get(axis)
            if cost is None:
                out.append(f"{axis} unknown")
            elif cost > limit:
                out.append(f"{_name(axis)} {_fmt(axis, cost)} > {_fmt(axis, limit)}")
        return out


@dataclass(frozen=True)
class Option:
    """A configuration that may be chosen, with its costs for the budget's batch."""

    spec: str
    costs: Mapping[str, float | None]
    quality: float | None = None  # measured, lower is better; None: ranked by order
    source: Any = None  # what it came from: a planner `Prediction` or a front row


@dataclass(frozen=True)
class Choice:
    chosen: Option
    ahead: tuple[Option, ...]  # ranked strictly better, best first: all over the budget
    cheaper: Option | None  # the best one that costs less on `axis`, within the other limits
    axis: str  # the first limit: the cost neighbours are ordered by

    @property
    def better(self) -> Option | None:
        """The cheapest (on `axis`) of the options ranked better than the chosen one."""
        if not self.ahead:
            return None
        return min(self.ahead, key=lambda o: (o.costs[self.axis], _quality(o)))


def choose(budget: Budget, options: Sequence[Option]) -> Choice:
    """The best-ranked option within every limit of `budget`, and its neighbours; ValueError
    naming what even the cheapest option needs when none fits."""
    axis = next(iter(budget.limits))
    usable = [o for o in options if o.costs.get(axis) is not None]
    if not usable:
        hint = (" (latency needs a profile measured on this machine)" if axis == "latency"
                else "")
        raise ValueError(f"none of the {len(options)} configurations has a {axis} cost to "
                         f"compare with the budget{hint}.")
    rank = {id(o): (_quality(o) if o.quality is not None else i) for i, o in enumerate(usable)}
    ranked = sorted(usable, key=lambda o: (rank[id(o)], o.costs[axis]))
    inside = [o for o in ranked if not budget.over(o.costs)]
    if not inside:
        cheapest = min(reversed(ranked), key=lambda o: o.costs[axis])
        raise ValueError(f"nothing fits the budget: even the cheapest, {cheapest.spec}, needs "
                         f"{', '.join(budget.over(cheapest.costs))}; raise the budget or "
                         "lower the batch.")
    chosen = inside[0]
    ahead = tuple(o for o in ranked if rank[id(o)] < rank[id(chosen)])
    others = {a: v for a, v in budget.limits.items() if a != axis}
    cheaper = next((o for o in ranked if o.costs[axis] < chosen.costs[axis] and all(
        o.costs.get(a) is not None and o.costs[a] <= v for a, v in others.items())), None)
    return Choice(chosen, ahead, cheaper, axis)


def _quality(option: Option) -> float:
    return math.inf if option.quality is None else option.quality


def _name(axis: str) -> str:
    return {"kv": "KV"}.get(axis, axis)


def _fmt(axis: str, value: float) -> str:
    return f"{value:.2f} s" if axis == "latency" else fmt_bytes(value)
