"""The work of one sampling call, described once: row groups, and per scale the passes they run.

A call's rows form groups (`Group`): the images' conditional rows under the plan and, with
guidance, the guiding rows (the null class, or the image's own class under autoguidance) under
their own plan up to their last scale; with every lever neutral the two are one group, the
official layout (conditional rows first, then unconditional). At each scale the groups that run
it form passes: consecutive groups with the same layers there run as one pass, so the weights
are read once (`run_together`).

`steps` walks every layer step of a call (scale, layer, and per group run together: rows, tokens
run, tokens attended to). The sampler's scale loop runs these passes; the FLOP and token-layer
counts (models/cost.py) and the latency model (efficiency/budget.py) read `steps`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .levers import Levers
    from .plan import DepthPlan


@dataclass(frozen=True)
class Group:
    """Rows that run together: their plan, how many scales they run, and their condition."""

    plan: DepthPlan  # the layers it runs, truncated to the scales it runs
    stop: int  # scales 0..stop-1 run
    condition: str  # "own" (the image's class), "null", "own+null" (both halves, one group)
    guiding: bool = False  # the guiding rows (null class, or own class under autoguidance)

    @property
    def rows_per_image(self) -> int:
        return 2 if self.condition == "own+null" else 1


@dataclass(frozen=True)
class Part:
    """One group's share of a layer step."""

    group: Group
    rows: int  # rows of the group (all images)
    tokens: int  # positions that run the layer
    context: int  # tokens the layer attends to (this scale's included)


@dataclass(frozen=True)
class Step:
    """One layer at one scale, for the groups run together there (one weight read)."""

    scale_index: int
    layer: int
    parts: tuple[Part, ...]


def run_together(groups: Sequence, scale_index: int) -> list[list]:
    """The groups (anything with `.plan` and `.stop`) that run scale k, consecutive ones with the
    same layers there batched into one pass (the weights are read once): the sampler's rule."""
    batches: list[list] = []
    for g in groups:
        if scale_index >= g.stop:
            continue
        if batches and batches[-1][0].plan.layers_at(scale_index) == g.plan.layers_at(scale_index):
            batches[-1].append(g)
        else:
            batches.append([g])
    return batches


def steps(levers: Levers, patch_nums: Sequence[int], batch: int) -> Iterator[Step]:
    """Every layer step of one call of `batch` images, in the order the sampler runs them."""
    sizes = levers.sizes(patch_nums)
    for k in range(len(patch_nums)):
        for together in run_together(levers.groups, k):
            for layer in together[0].plan.layers_at(k):
                yield Step(k, layer, tuple(
                    Part(g, batch * g.rows_per_image, sizes[k],
                         levers.context_tokens(g.plan, sizes, layer, k)) for g in together))


def scale_rows(levers: Levers, batch: int, scale_index: int) -> int:
    """Rows of all groups that run scale k (each gets logits there)."""
    return sum(batch * g.rows_per_image for g in levers.groups if scale_index < g.stop)


def truncate(plan: DepthPlan, stop: int) -> DepthPlan:
    """`plan` cut to its first `stop` scales (the guiding rows' plan when guidance stops)."""
    if stop == plan.num_scales:
        return plan
    return type(plan)(plan.layer_sets[:stop], plan.total_depth)
