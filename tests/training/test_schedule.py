"""Ratio schedules, the per-step plan draw, and the official lr / weight-decay schedule."""

import math
from collections import Counter

import pytest

from variant.sampling.plan import DepthPlan
from variant.training import LRSchedule, PlanSchedule, RatioSchedule, TrainConfig
from variant.training.schedule import draw_subnet_depth


def test_progressive_ratio_three_phases_at_fractional_epochs():
    ratio = RatioSchedule.from_config(TrainConfig(phase_epochs=(5, 15, 10)))
    assert ratio(0.0) == ratio(4.999) == 0.2
    assert ratio(5.0) == pytest.approx(0.2)
    assert ratio(12.5) == pytest.approx(0.2 + 0.8 * 7.5 / 15)
    assert ratio(19.99) == pytest.approx(0.2 + 0.8 * 14.99 / 15)
    assert ratio(20.0) == ratio(29.9) == 1.0


def test_fixed_and_full_only_ratios():
    assert RatioSchedule.from_config(TrainConfig(ratio="fixed:0.1"))(17.3) == 0.1
    assert RatioSchedule.from_config(TrainConfig(ratio="fixed:1"))(0.0) == 1.0
    assert RatioSchedule.from_config(TrainConfig(ratio="full-only"))(3.0) == 0.0
    for bad in ("fixed:1.5", "fixed:x", "sometimes"):
        with pytest.raises(ValueError, match="ratio must be"):
            TrainConfig(ratio=bad)


def test_draw_is_pure_and_matches_p_and_uniform_depths():
    depths = (2, 4, 8, 16)
    draws = [draw_subnet_depth(7, s, 0.3, depths) for s in range(4000)]
    assert draws == [draw_subnet_depth(7, s, 0.3, depths) for s in range(4000)]
    assert draws != [draw_subnet_depth(8, s, 0.3, depths) for s in range(4000)]
    counts = Counter(draws)
    assert abs(sum(counts[d] for d in depths) / 4000 - 0.3) < 0.03
    assert all(abs(counts[d] / sum(counts[x] for x in depths) - 0.25) < 0.05 for d in depths)
    assert all(draw_subnet_depth(0, s, 0.0, depths) is None for s in range(100))
    assert all(draw_subnet_depth(0, s, 1.0, depths) in depths for s in range(100))


def test_plan_schedule_uses_paper_plans_with_full_bridge():
    config = TrainConfig(subnet_depths=(2, 4), bridge=6, ratio="fixed:1.0")
    plans = PlanSchedule(config, depth=8, num_scales=10, steps_per_epoch=10)
    name, plan = plans.plan(3)
    assert name in ("d2", "d4")
    assert all(plan.layers_at(k) == tuple(range(8)) for k in range(6))
    assert len(plan.layers_at(9)) == int(name[1:])
    assert plans.unused_layers() == {}
    with pytest.raises(ValueError, match="do not fit"):
        PlanSchedule(TrainConfig(subnet_depths=(8,)), depth=8, num_scales=10, steps_per_epoch=1)
    no_bridge = PlanSchedule(TrainConfig(subnet_depths=(2,), bridge=0), 4, 3, 1)
    assert no_bridge.unused_layers() == {"d2@bridge0": [1, 2]}


def test_plan_names_are_the_plans_own_specs():
    default = PlanSchedule(TrainConfig(subnet_depths=(2, 4), ratio="fixed:1.0"), 8, 10, 10)
    assert default.bridge == 6 and list(default.plans) == ["full", "d2", "d4"]
    short = PlanSchedule(TrainConfig(subnet_depths=(2,), bridge=3, ratio="fixed:1.0"), 8, 10, 1)
    name, plan = short.plan(0)
    assert name == plan.name == "d2@bridge3"
    assert DepthPlan.from_spec(name, 8, 10) == plan
    with pytest.raises(ValueError, match="bridge must be in 0..10"):
        PlanSchedule(TrainConfig(bridge=11), 8, 10, 1)


def test_lr_warmup_matches_official_values():
    # Reference section 6: lr at it 0, 1, 2 = tlr * {0.005, 0.5025, 1} with wp_it = 2.
    sched = LRSchedule(peak_lr=3e-4, total_steps=100, warmup_steps=2)
    assert [sched.lr_factor(i) for i in range(3)] == pytest.approx([0.005, 0.5025, 1.0])


def test_lin0_and_cos_decay_and_weight_decay_cosine():
    lin0 = LRSchedule(peak_lr=1.0, total_steps=102, warmup_steps=1, lr_end=0.01)
    assert lin0.lr_factor(1) == lin0.lr_factor(5) == 1.0  # flat for the first 5%
    assert lin0.lr_factor(101) == pytest.approx(0.01)
    assert lin0.lr_factor(51) == pytest.approx(0.01 + 0.99 * 0.5 / 0.95)
    cos = LRSchedule(peak_lr=1.0, total_steps=102, warmup_steps=1, decay="cos", lr_end=0.1)
    assert cos.lr_factor(51) == pytest.approx(0.1 + 0.9 * 0.5)
    wd = LRSchedule(peak_lr=1.0, total_steps=11, warmup_steps=0, wd_start=0.05, wd_end=0.08)
    assert wd.weight_decay(0) == pytest.approx(0.05)
    assert wd.weight_decay(10) == pytest.approx(0.08)
    assert wd.weight_decay(5) == pytest.approx(0.065)


def test_lr_rule_and_default_warmup_from_config():
    official = TrainConfig(lr=8e-5, lr_rule="per256", global_batch=1024)
    assert official.peak_lr == pytest.approx(3.2e-4)  # d30: tblr 8e-5 at batch 1024
    config = TrainConfig(lr=1e-6, phase_epochs=(5, 15, 30))  # 50 epochs: warm-up 1 epoch
    sched = LRSchedule.from_config(config, steps_per_epoch=10)
    assert sched.peak_lr == 1e-6 and sched.warmup_steps == 10 and sched.total_steps == 500
    assert math.isclose(sched.lr(0), 1e-6 * 0.005)


def test_family_schedule_trains_every_plan_of_the_family_deterministically():
    config = TrainConfig(subnet_depths=(2, 4), ratio="fixed:0.75", plan_family="monotone",
                         seed=3)
    plans = PlanSchedule(config, depth=8, num_scales=6, steps_per_epoch=10)
    assert len(plans.subnets) == 20 and plans.plans["full"].name == "full"
    names = [plans.name(s) for s in range(2000)]
    again = PlanSchedule(config, depth=8, num_scales=6, steps_per_epoch=10)
    assert names == [again.name(s) for s in range(2000)]  # a resumed run draws the same
    counts = Counter(names)
    assert abs(counts["full"] / 2000 - 0.25) < 0.03
    assert set(counts) == {"full", *plans.subnets}
    assert max(counts[n] for n in plans.subnets) < 2.2 * min(counts[n] for n in plans.subnets)


def test_paper_family_draws_are_unchanged_by_the_family_option():
    paper = PlanSchedule(TrainConfig(subnet_depths=(2, 4), ratio="fixed:0.6"), 8, 6, 10)
    expected = [None if (d := draw_subnet_depth(0, s, 0.6, (2, 4))) is None else f"d{d}"
                for s in range(300)]
    assert [paper.name(s) for s in range(300)] == [e or "full" for e in expected]
    zone = PlanSchedule(TrainConfig(subnet_depths=(2, 4), ratio="fixed:1.0",
                                    plan_family="zone:1-2"), 8, 6, 10)
    assert set(zone.subnets) == {"d4@r1-r2", "d2@r1-r2"}
    name, plan = zone.plan(5)
    assert plan.layers_at(5) == tuple(range(8)) and len(plan.layers_at(0)) == int(name[1])
    with pytest.raises(ValueError, match="plan family"):
        TrainConfig(plan_family="zone")
