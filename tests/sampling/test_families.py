"""Plan families (sampling/families.py) and per-scale plans ('d8.8.4.4.2')."""

import math

import pytest

from variant.sampling.families import PlanFamily, read_family
from variant.sampling.plan import DepthPlan, equidistant_layers


def _depths(plan: DepthPlan) -> list[int]:
    return [len(plan.layers_at(k)) for k in range(plan.num_scales)]


@pytest.mark.parametrize("num_scales,subnets", [(6, [4, 2]), (10, [16, 8, 4, 2]), (3, [2])])
def test_monotone_family_is_every_non_increasing_plan_once(num_scales, subnets):
    depth = 30 if max(subnets) > 8 else 8
    plans = read_family("monotone").plans(depth, num_scales, subnets)
    assert plans[0].name == "full"
    s = len(subnets)
    assert len(plans) - 1 == math.comb(num_scales - 1 + s, s) - 1
    assert len({p.layer_sets for p in plans}) == len(plans)
    for plan in plans[1:]:
        depths = _depths(plan)
        assert depths[0] == depth and depths != [depth] * num_scales
        assert all(a >= b for a, b in zip(depths, depths[1:]))
        assert set(depths) <= {depth, *subnets}
        assert all(plan.layers_at(k) == tuple(equidistant_layers(depth, d))
                   for k, d in enumerate(depths))
        assert DepthPlan.from_spec(plan.name, depth, num_scales).layer_sets == plan.layer_sets


def test_monotone_family_holds_the_paper_plans_of_every_bridge():
    names = {p.name for p in read_family("monotone").plans(8, 6, [2, 4])}
    assert {"d4", "d2", "d4@bridge1", "d2@bridge5", "d8.8.8.8.4.2"} <= names
    assert "d8.8.8.8.2.4" not in names and "d4@r1-r2" not in names


def test_zone_and_paper_families():
    zone = read_family("zone:r1-r2")
    assert zone == PlanFamily("zone", (1, 2)) and zone.name == "zone:1-2"
    assert [p.name for p in zone.plans(8, 6, [2, 4])] == ["full", "d4@r1-r2", "d2@r1-r2"]
    late = read_family("zone:5-6").plans(8, 6, [4])[1]
    assert late.layer_sets == DepthPlan.paper(8, 4, None, 6).layer_sets
    assert [p.name for p in read_family("Paper").plans(8, 6, [4, 2])] == ["full", "d4", "d2"]
    assert read_family(" monotone ").name == "monotone"


@pytest.mark.parametrize("text,message", [
    ("zonk", "cannot read the plan family"), ("zone:", "cannot read the plan family"),
    ("zone:a", "cannot read the scale range"),
    ("zone:3-1", "FIRST <= LAST"), ("zone:0-2", "FIRST <= LAST"), ("", "cannot read")])
def test_bad_family_names_the_syntax(text, message):
    with pytest.raises(ValueError, match=message):
        read_family(text)


def test_family_checks_the_model():
    with pytest.raises(ValueError, match="within 1..6"):
        read_family("zone:5-7").plans(8, 6, [4])
    with pytest.raises(ValueError, match="subnet depths below"):
        read_family("monotone").plans(8, 6, [8, 9])


def test_per_scale_plans_are_named_by_their_shape():
    assert DepthPlan.per_scale(8, [8] * 6, 6).name == "full"
    assert DepthPlan.per_scale(8, [8, 8, 8, 8, 4, 4], 6).name == "d4"
    assert DepthPlan.per_scale(8, [8, 8, 4, 4, 4, 4], 6).name == "d4@bridge2"
    odd = DepthPlan.from_spec("d8.8.8.4.4.2", 8, 6)
    assert odd.name == "d8.8.8.4.4.2" and _depths(odd) == [8, 8, 8, 4, 4, 2]
    assert DepthPlan.from_spec("D4.4.4.4.4.4", 8, 6).name == "d4.4.4.4.4.4"
    with pytest.raises(ValueError, match="gives 2 depths for a model of 6 scales"):
        DepthPlan.from_spec("d8.4", 8, 6)
    with pytest.raises(ValueError, match="subnet_depth must be in 1..8"):
        DepthPlan.from_spec("d8.8.8.8.9.4", 8, 6)
