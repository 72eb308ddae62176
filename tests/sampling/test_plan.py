import json

import pytest

from variant import DepthPlan, equidistant_layers
from variant.config import PATCH_NUMS_256
from variant.sampling.plan import (
    PlanSpec,
    default_bridge,
    default_plan_specs,
    paper_family,
    parse_spec,
)


def test_equidistant_formula():
    assert equidistant_layers(30, 8) == [0, 4, 8, 12, 16, 20, 24, 29]
    assert equidistant_layers(30, 16) == [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29]
    assert equidistant_layers(30, 2) == [0, 29]
    assert equidistant_layers(30, 30) == list(range(30))
    assert equidistant_layers(30, 1) == [0]
    for D in range(2, 40):
        for d in range(2, D + 1):
            layers = equidistant_layers(D, d)
            assert layers == [(i * (D - 1)) // (d - 1) for i in range(d)]
            assert len(set(layers)) == d and layers[0] == 0 and layers[-1] == D - 1


def test_paper_sets_are_not_nested_for_d30():
    p8, p16 = DepthPlan.paper(30, 8, 6, 10), DepthPlan.paper(30, 16, 6, 10)
    assert p8.layers_not_nested_in(p16) == [6, 7, 8, 9]
    assert DepthPlan.paper(30, 2, 6, 10).layers_not_nested_in(p16) == []


def test_paper_plan_zones():
    plan = DepthPlan.paper(30, 8, 6, 10)
    assert plan.bridge == 6 and plan.num_scales == 10
    assert all(plan.layers_at(k) == tuple(range(30)) for k in range(6))
    assert all(plan.layers_at(k) == (0, 4, 8, 12, 16, 20, 24, 29) for k in range(6, 10))
    assert plan.scales_of_layer(4) == tuple(range(10))
    assert plan.scales_of_layer(5) == tuple(range(6))
    assert DepthPlan.paper(30, 30, 6, 10) == DepthPlan.full(30, 10)


def test_token_layer_accounting():
    # FLOPs and bytes: tests/models/test_cost.py
    full = DepthPlan.full(30, 10)
    assert full.token_layers(PATCH_NUMS_256) == 30 * 680
    d8 = DepthPlan.paper(30, 8, 6, 10)
    assert d8.token_layers(PATCH_NUMS_256) == 30 * 91 + 8 * 589  # bridge 1+..+36 = 91 tokens
    assert d8.context_tokens(PATCH_NUMS_256, 4, 9) == 680  # layer 4 runs every scale
    assert d8.context_tokens(PATCH_NUMS_256, 5, 5) == 91  # layer 5 only the bridge zone
    assert d8.kv_token_layers(PATCH_NUMS_256)[4] == 680 - 256  # all but its last scale
    assert d8.kv_token_layers(PATCH_NUMS_256)[5] == 91 - 36


@pytest.mark.parametrize("call, message", [
    (lambda: equidistant_layers(30, 0), "1..30"),
    (lambda: equidistant_layers(30, 31), "1..30"),
    (lambda: DepthPlan.paper(30, 8, 11, 10), "bridge must be in 0..10"),
    (lambda: DepthPlan.paper(30, 8, -1, 10), "bridge must be in 0..10"),
    (lambda: DepthPlan([]), "no scales"),
    (lambda: DepthPlan([[0, 1], []]), "scale 1 has an empty layer set"),
    (lambda: DepthPlan([[1, 0]]), "sorted"),
    (lambda: DepthPlan([[0, 0, 1]]), "duplicate"),
    (lambda: DepthPlan([[0, 4]], total_depth=4), "out of range"),
    (lambda: DepthPlan([[-1, 2]]), "negative"),
    (lambda: DepthPlan.from_spec("deep", 30, 10, 6), "cannot read plan"),
])
def test_bad_plans_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_check_against_model_shape():
    with pytest.raises(ValueError, match="built for a 30-layer model"):
        DepthPlan.paper(30, 8, 6, 10).check(16, 10)
    with pytest.raises(ValueError, match="has 10 scales but the model has 4"):
        DepthPlan.full(4, 10).check(4, 4)
    with pytest.raises(ValueError, match="uses layer 7"):
        DepthPlan([[0, 7]] * 4).check(4, 4)


def test_spec_parsing_and_roundtrip():
    assert DepthPlan.from_spec("full", 30, 10, 6) == DepthPlan.full(30, 10)
    assert DepthPlan.from_spec("d8", 30, 10, 6) == DepthPlan.paper(30, 8, 6, 10)
    assert DepthPlan.from_spec("8", 30, 10, 6) == DepthPlan.paper(30, 8, 6, 10)
    assert DepthPlan.from_spec("d30", 30, 10) == DepthPlan.full(30, 10)
    custom = DepthPlan.from_spec("[[0,1,2,3],[0,3],[1],[2,3]]", 4, 4, 1)
    assert custom.layers_at(1) == (0, 3)
    assert DepthPlan.from_dict(custom.to_dict()) == custom


def test_default_bridge_is_the_papers_sixty_percent():
    assert [default_bridge(k) for k in (1, 2, 3, 6, 10, 13)] == [1, 1, 2, 4, 6, 8]
    assert DepthPlan.from_spec("d8", 30, 10) == DepthPlan.paper(30, 8, None, 10)
    assert DepthPlan.paper(30, 8, None, 10).bridge == 6
    assert default_plan_specs(30) == ["full", "d16", "d8", "d4", "d2"]
    assert default_plan_specs(8) == ["full", "d4", "d2"]


def test_one_name_per_plan_that_parses_back():
    D, K = 30, 10
    plans = {
        "full": DepthPlan.full(D, K),
        "d8": DepthPlan.paper(D, 8, 6, K),  # the default bridge is left out of the name
        "d8@bridge5": DepthPlan.paper(D, 8, 5, K),
        "d2@bridge0": DepthPlan.paper(D, 2, 0, K),
        "d8@r7-r10": DepthPlan.subnet_on_scales(D, 8, (7, 10), K),
        "d15@r4": DepthPlan.subnet_on_scales(D, 15, (4, 4), K),
        "[[0,1],[1]]": DepthPlan([[0, 1], [1]], 2),
    }
    for name, plan in plans.items():
        assert plan.name == name
        depth, scales = plan.total_depth, plan.num_scales
        assert DepthPlan.from_spec(name, depth, scales) == plan
        assert DepthPlan.from_dict(plan.to_dict()) == plan
    # Whatever builds a plan that runs every layer everywhere calls it full.
    assert DepthPlan.paper(D, 8, K, K).name == DepthPlan.paper(D, D, 6, K).name == "full"
    assert DepthPlan.subnet_on_scales(D, D, (1, 3), K).name == "full"
    assert DepthPlan.from_spec("D8@Bridge5", D, K) == plans["d8@bridge5"]
    assert DepthPlan.from_spec("d8", D, K, bridge=5) == plans["d8@bridge5"]
    assert DepthPlan.from_spec("d8@r7-10", D, K) == plans["d8@r7-r10"]
    # names written before the naming scheme give way to the spec of the layers
    legacy = {**plans["d8"].to_dict(), "name": "d8/bridge6"}
    assert DepthPlan.from_dict(legacy).name == json.dumps(plans["d8"].to_dict()["layer_sets"],
                                                          separators=(",", ":"))


def test_paper_family_and_parse_spec():
    family = paper_family(8, 6, [4, 2])
    assert [p.name for p in family] == ["full", "d4", "d2"]
    assert [p.bridge for p in family] == [6, 4, 4]
    assert parse_spec("d8@bridge5") == PlanSpec("paper", 8, 5)
    assert parse_spec("d8@r7-r10") == PlanSpec("range", 8, scale_range=(7, 10))
    assert parse_spec("full").subnet_depth is None and parse_spec("d4").subnet_depth == 4


@pytest.mark.parametrize("call, message", [
    (lambda: DepthPlan.from_spec("d8@bridge5", 30, 10, bridge=4), "drop one of them"),
    (lambda: DepthPlan.from_spec("d8@r7-r11", 30, 10), "must lie within 1..10"),
    (lambda: DepthPlan.from_spec("d8@r5-r3", 30, 10), "first <= last"),
    (lambda: DepthPlan.from_spec("d8@bridge11", 30, 10), "bridge must be in 0..10"),
    (lambda: DepthPlan.from_spec("d8/bridge6", 30, 10), "cannot read plan"),
    (lambda: DepthPlan.from_spec("[[0,1],", 2, 1), "as JSON"),
    (lambda: DepthPlan.from_spec("[[0,1]]", 2, 3), "has 1 scales but the model has 3"),
])
def test_bad_specs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
