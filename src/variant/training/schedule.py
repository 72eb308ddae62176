"""Schedules as pure functions of the step: subnet ratio, plan draw, learning rate, weight decay.

Nothing here holds state, so a resumed run (or another rank) recomputes exactly what an
uninterrupted run would: the position in every schedule is the optimizer step alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..sampling.families import read_family
from ..sampling.plan import DepthPlan, paper_family, resolve_bridge
from .config import TrainConfig

FULL = "full"


@dataclass(frozen=True)
class RatioSchedule:
    """Probability p that a step trains a subnet, as a function of the (fractional) epoch.

    `fixed` set: p is constant (the paper's baselines p = 0.1 and p = 1.0; 0.0 is full-only).
    Otherwise the three-stage dynamic ratio: p_start until `phase1_end`, a linear rise to p_end
    at `phase2_end`, then p_end.
    """

    p_start: float = 0.2
    p_end: float = 1.0
    phase1_end: float = 5.0
    phase2_end: float = 20.0
    fixed: float | None = None

    @classmethod
    def from_config(cls, config: TrainConfig) -> RatioSchedule:
        e1, e2, _ = config.phase_epochs
        return cls(config.p_start, config.p_end, e1, e1 + e2, config.fixed_ratio)

    def __call__(self, epoch: float) -> float:
        if self.fixed is not None:
            return self.fixed
        if epoch < self.phase1_end:
            return self.p_start
        if epoch >= self.phase2_end:
            return self.p_end
        frac = (epoch - self.phase1_end) / (self.phase2_end - self.phase1_end)
        return self.p_start + (self.p_end - self.p_start) * frac


def draw_subnet(seed: int, step: int, p: float, count: int) -> int | None:
    """Which of `count` subnet plans `step` trains (an index), or None for a full step; a pure
    function of its args.

    One generator per step, seeded from (seed, step) without Python's salted `hash`, so every
    rank and every resumed run draws the same: first u ~ U[0, 1) decides subnet (u < p) vs full,
    then a second uniform picks the subnet.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    u, v = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    if u >= p:
        return None
    return min(int(v * count), count - 1)


def draw_subnet_depth(seed: int, step: int, p: float, depths: tuple[int, ...]) -> int | None:
    """The subnet depth trained at `step` (paper family), or None for a full step."""
    index = draw_subnet(seed, step, p, len(depths))
    return None if index is None else depths[index]


class PlanSchedule:
    """Maps a step to its plan: the full plan or a subnet plan of the configured family.

    Paper family (the default): the paper plan of a subnet depth drawn from `subnet_depths`.
    Other families (sampling/families.py: `zone:A-B`, `monotone`): one of the family's subnet
    plans, drawn uniformly, so every plan of the family is trained. Plans are keyed by their
    names (`DepthPlan.name`: 'full', 'd8', 'd8@r1-r2', 'd8.8.4.4.2'), the names the metrics
    record per step (metrics.jsonl: the draw's log).
    """

    def __init__(self, config: TrainConfig, depth: int, num_scales: int, steps_per_epoch: int):
        bridge = resolve_bridge(None if config.bridge < 0 else config.bridge, num_scales)
        bad = [d for d in config.subnet_depths if not 1 <= d < depth]
        if bad:
            raise ValueError(f"subnet depths {bad} do not fit a {depth}-layer model; choose "
                             f"depths in 1..{depth - 1} (e.g. --subnet-depths 2,4).")
        self.seed, self.depths, self.bridge = config.seed, config.subnet_depths, bridge
        self.family = read_family(config.plan_family)
        self.ratio = RatioSchedule.from_config(config)
        self.steps_per_epoch = steps_per_epoch
        if self.family.kind == "paper":
            family = paper_family(depth, num_scales, self.depths, bridge)
        else:
            family = self.family.plans(depth, num_scales, self.depths)
        self.plans = {plan.name: plan for plan in family}
        self.subnets = [plan.name for plan in family[1:]]

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch

    def p(self, step: int) -> float:
        return self.ratio(self.epoch(step))

    def name(self, step: int) -> str:
        index = draw_subnet(self.seed, step, self.p(step), len(self.subnets))
        return FULL if index is None else self.subnets[index]

    def plan(self, step: int) -> tuple[str, DepthPlan]:
        name = self.name(step)
        return name, self.plans[name]

    def unused_layers(self) -> dict[str, list[int]]:
        """Per plan, the layers it never runs (DDP must then look for unused parameters)."""
        out = {}
        for name, plan in self.plans.items():
            depth = plan.total_depth
            unused = [layer for layer in range(depth) if not plan.scales_of_layer(layer)]
            if unused:
                out[name] = unused
        return out


@dataclass(frozen=True)
class LRSchedule:
    """The official `lr_wd_annealing`: warm-up, then lin0 / cos / constant; cosine weight decay."""

    peak_lr: float
    total_steps: int
    warmup_steps: int
    warmup_start: float = 0.005
    decay: str = "lin0"
    lr_end: float = 0.01
    wd_start: float = 0.05
    wd_end: float = 0.05

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> LRSchedule:
        total = total_steps(config, steps_per_epoch)
        wp_epochs = config.total_epochs / 50 if config.warmup_epochs < 0 else config.warmup_epochs
        return cls(config.peak_lr, total, round(wp_epochs * steps_per_epoch), config.warmup_start,
                   config.lr_decay, config.lr_end, config.weight_decay,
                   config.final_weight_decay)

    def lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        span = max(1, self.total_steps - 1 - self.warmup_steps)
        done = min(1.0, (step - self.warmup_steps) / span)
        if self.decay == "cos":
            return self.lr_end + (1 - self.lr_end) * (0.5 + 0.5 * math.cos(math.pi * done))
        if done < 0.05:  # lin0: flat for the first 5% after warm-up, then linear to lr_end
            return 1.0
        return self.lr_end + (1 - self.lr_end) * (1 - done) / 0.95

    def lr(self, step: int) -> float:
        return self.peak_lr * self.lr_factor(step)

    def weight_decay(self, step: int) -> float:
        cos = 0.5 + 0.5 * math.cos(math.pi * step / max(1, self.total_steps - 1))
        return self.wd_end + (self.wd_start - self.wd_end) * cos


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    return max(1, round(config.total_epochs * steps_per_epoch))
