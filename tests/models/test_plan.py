import pytest

from variant import DepthPlan, equidistant_layers
from variant.config import PATCH_NUMS_256


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


def test_accounting_matches_design_anchors():
    full = DepthPlan.full(30, 10)
    assert full.token_layers(PATCH_NUMS_256) == 30 * 680
    bounds = {16: 1.68, 8: 2.76, 4: 4.07, 2: 5.33}
    for d, bound in bounds.items():
        plan = DepthPlan.paper(30, d, 6, 10)
        ratio = full.flops(PATCH_NUMS_256, 1920) / plan.flops(PATCH_NUMS_256, 1920)
        assert ratio == pytest.approx(bound, abs=0.01)
    # DESIGN: scales 7..10 carry 86% of the FLOPs; that is their token share 589/680 = 0.866
    # (the linear layers); attention, which grows with the context, lifts it to 0.870.
    per_scale = full.flops_per_scale(PATCH_NUMS_256, 1920)
    assert sum(per_scale[6:]) / sum(per_scale) == pytest.approx(0.870, abs=0.001)
    assert sum(p * p for p in PATCH_NUMS_256[6:]) / 680 == pytest.approx(0.866, abs=0.001)

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
    custom = DepthPlan.from_spec("[[0,1,2,3],[0,3],[1],[2,3]]", 4, 4, 1)
    assert custom.layers_at(1) == (0, 3)
    assert DepthPlan.from_dict(custom.to_dict()) == custom
