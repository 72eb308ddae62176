"""Plan families: the sets of plans a supernet is trained for and a plan search explores.

A family is named by a short text (`read_family`) and, on a model of D layers and K scales with
the subnet depths S, is a list of plans: the full plan first, then its subnet plans, each once.

    paper        the paper's plans: full network on the bridge zone, one subnet depth d in S
                 after it (`d4`, `d2`); the plans `variant train` has always trained
    zone:A-B     one subnet depth d in S on scales A..B only (1-based, inclusive), the full
                 network elsewhere (`d4@r1-r2`): the controlled asymmetry study moves the zone
    monotone     one depth per scale from {D} and S, never deeper than the scale before, the
                 full network on the first scale (`d8.8.8.4.4.2`): every per-scale plan that
                 spends less on finer scales. It holds the paper's plans of every bridge >= 1;
                 with |S| = s it has C(K - 1 + s, s) - 1 subnet plans (20 for K = 6, s = 2).

Training draws a subnet step's plan uniformly from the family (training/schedule.py); the plan
search (variant/front/search.py) measures the family's plans under a FLOP budget.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .plan import DepthPlan, check_scale_range, paper_family, range_label, read_scale_range

KINDS = ("paper", "zone", "monotone")
SYNTAX = "'paper', 'zone:FIRST-LAST' (e.g. zone:1-2, 1-based scales) or 'monotone'"
_TEXT = re.compile(r"^\s*(paper|monotone|zone\s*:\s*(.+))\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class PlanFamily:
    """A named set of plans (module docstring); `plans` binds it to a model."""

    kind: str = "paper"
    scale_range: tuple[int, int] | None = None  # zone: 1-based, inclusive

    @property
    def name(self) -> str:
        if self.kind == "zone":
            return "zone:" + range_label(self.scale_range).replace("r", "")
        return self.kind

    def plans(self, total_depth: int, num_scales: int, subnet_depths: Sequence[int],
              bridge: int | None = None) -> list[DepthPlan]:
        """The full plan, then each subnet plan of the family once (`bridge`: paper only)."""
        depths = sorted({int(d) for d in subnet_depths if int(d) < total_depth}, reverse=True)
        if not depths:
            raise ValueError(f"plan family {self.name!r} needs subnet depths below the model's "
                             f"{total_depth} layers, got {list(subnet_depths)}.")
        if self.kind == "paper":
            return paper_family(total_depth, num_scales, depths, bridge)
        full = DepthPlan.full(total_depth, num_scales)
        if self.kind == "zone":
            scale_range = check_scale_range(self.scale_range, num_scales)
            subnets = [DepthPlan.subnet_on_scales(total_depth, d, scale_range, num_scales)
                       for d in depths]
        else:
            subnets = [DepthPlan.per_scale(total_depth, (total_depth,) + tail, num_scales)
                       for tail in _non_increasing([total_depth] + depths, num_scales - 1)]
        return [full] + [plan for plan in subnets if plan.layer_sets != full.layer_sets]


def _non_increasing(choices: Sequence[int], length: int) -> list[tuple[int, ...]]:
    """Every non-increasing sequence of `length` values from `choices` (deepest first)."""
    ordered = sorted(choices, reverse=True)
    return [tuple(ordered[i] for i in picks)
            for picks in itertools.combinations_with_replacement(range(len(ordered)), length)]


def read_family(text: str) -> PlanFamily:
    """'paper', 'monotone', 'zone:1-2' (or 'zone:r1-r2') -> a PlanFamily; ValueError naming the
    syntax. The zone's scales are checked against the model by `plans`."""
    m = _TEXT.match(str(text))
    if m is None:
        raise ValueError(f"cannot read the plan family {text!r}: use {SYNTAX}.")
    kind = m.group(1).split(":")[0].strip().lower()
    if kind != "zone":
        return PlanFamily(kind)
    first, last = read_scale_range(m.group(2))
    if not 1 <= first <= last:
        raise ValueError(f"plan family {text!r}: the zone needs 1 <= FIRST <= LAST, e.g. "
                         "zone:1-2.")
    return PlanFamily("zone", (first, last))
