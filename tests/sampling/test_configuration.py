"""Configuration specs (a plan plus levers, sampling/configuration.py): parsing, canonical names,
errors; the cost model under levers against hand counts; `variant sample` running them."""

import itertools
import json
import re

import pytest

from variant import DepthPlan, VARConfig, load_model
from variant.cli.main import main
from variant.config import PATCH_NUMS_256
from variant.models.cost import CostModel
from variant.sampling.configuration import EXAMPLE, Configuration, parse_configuration
from variant.sampling.levers import Levers
from variant.sampling.settings import SamplingConfig

D30, K10 = 30, len(PATCH_NUMS_256)  # the paper's shape: 30 layers, 10 scales


def resolve(spec, settings=None, bridge=None, depth=D30, patch_nums=PATCH_NUMS_256):
    return Configuration.resolve(spec, depth, patch_nums, settings or SamplingConfig(), bridge)


# ------------------------------------------------------------------ parsing and names
def test_parse_splits_plan_and_levers():
    assert EXAMPLE == "d8+cfgstop8+prune0.5@8"
    assert parse_configuration("d8+cfgstop8+prune0.5@8") == ("d8", {"cfg_stop": 8,
                                                                   "prune": (0.5, 8)})
    assert parse_configuration("full+guide=d2") == ("full", {"guide_plan": "d2",
                                                             "guide_class": "null"})
    assert parse_configuration("full+autoguide=d2@bridge5") == (
        "full", {"guide_plan": "d2@bridge5", "guide_class": "same"})
    assert parse_configuration("d8+kv1,2") == parse_configuration("d8+kvkeep1,2") == (
        "d8", {"kv_keep": (1, 2)})
    assert parse_configuration(" d8 + KV1, 2") == ("d8", {"kv_keep": (1, 2)})
    assert parse_configuration("[[0,1],[1]]+cfgstop1") == ("[[0,1],[1]]", {"cfg_stop": 1})
    assert parse_configuration("d4") == ("d4", {})


@pytest.mark.parametrize("spec, name", [
    ("d8+cfgstop8+prune0.5@8", "d8+cfgstop8+prune0.5@8"),
    ("d8+prune0.5@8+cfgstop8", "d8+cfgstop8+prune0.5@8"),
    ("full+guide=d2", "full+guide=d2"),
    ("full+autoguide=d2", "full+autoguide=d2"),
    ("d8+kv1,2", "d8+kv1,2"),
    ("d8+kvkeep1,2", "d8+kv1,2"),
    ("D8+CFGSTOP8", "d8+cfgstop8"),
    ("d8 + prune.25@9", "d8+prune0.25@9"),
    ("d30+cfgstop9", "full+cfgstop9"),
    ("d8@r7-r10+kv0,3", "d8@r7-r10+kv0,3"),
    ("full+guide=[[0],[1],[2],[3],[4],[5],[6],[7],[8],[9]]",
     "full+guide=[[0],[1],[2],[3],[4],[5],[6],[7],[8],[9]]"),
])
def test_canonical_names_round_trip(spec, name):
    c = resolve(spec)
    assert c.name == name
    again = resolve(c.name)
    assert again.plan == c.plan and again.levers == c.levers and again.name == name


def test_resolved_levers_by_hand():
    c = resolve("d8+cfgstop8+prune0.5@8")
    assert c.plan == DepthPlan.paper(D30, 8, None, K10)
    assert [c.levers.get(n) for n in ("cfg_stop", "prune", "kv_keep")] == [8, (0.5, 8), None]
    assert c.levers.get("guide_plan") is None and c.levers.guided
    assert (c.settings.cfg_stop, c.settings.prune) == (8, (0.5, 8))
    auto = resolve("full+autoguide=d2")
    assert auto.levers.get("guide_plan").layer_sets == DepthPlan.paper(D30, 2, 6, K10).layer_sets
    assert auto.levers.get("guide_class") == "same" and auto.levers.get("cfg_stop") is None
    assert isinstance(auto.settings.guide_plan, DepthPlan)  # resolved once, for the sampler
    guide = resolve("full+guide=d2")
    assert guide.levers.get("guide_class") == "null" and guide.levers != auto.levers
    kv = resolve("d8+kv1,2")
    assert kv.levers.get("kv_keep") == (1, 2)
    assert [s for s in range(K10) if kv.levers.visible(s, 9)] == [0, 7, 8, 9]


def test_lever_order_does_not_matter():
    parts = ["cfgstop8", "autoguide=d2", "prune0.5@8", "kv1,2"]
    canonical = "d8+cfgstop8+autoguide=d2+prune0.5@8+kv1,2"
    configs = [resolve("+".join(["d8", *order])) for order in itertools.permutations(parts)]
    assert len(configs) == 24
    assert {c.name for c in configs} == {canonical}
    assert all(c.levers == configs[0].levers and c.plan == configs[0].plan for c in configs)


@pytest.mark.parametrize("spec, bare", [
    ("full+cfgstop10", "full"),  # cfg_stop = K: guidance at every scale
    ("d8+prune1@0", "d8"),  # keep everything
    ("d8+kv0,9", "d8"),  # the window covers every earlier scale
    ("d8+kv4,5", "d8"),
    ("d8+guide=d8", "d8"),  # guided by the plan itself
    ("d8+autoguide=d2+cfgstop0", "d8+cfgstop0"),  # no guiding rows at all: no guide plan
    ("full+cfgstop10+prune1@3+kv9,0+guide=full", "full"),
])
def test_neutral_levers_give_the_bare_name(spec, bare):
    c = resolve(spec)
    assert c.name == bare
    assert (c.levers.is_neutral) == ("+" not in bare)


def test_bridge_applies_to_the_plan_and_the_guide_plan():
    c = resolve("d8+guide=d2+cfgstop8", bridge=5)
    assert c.plan == DepthPlan.paper(D30, 8, 5, K10)
    assert c.levers.get("guide_plan").layer_sets == DepthPlan.paper(D30, 2, 5, K10).layer_sets
    assert c.name == "d8@bridge5+cfgstop8+guide=d2@bridge5"
    again = resolve(c.name)  # the name carries the bridge: no --bridge needed
    assert again.plan == c.plan and again.levers == c.levers


def test_name_round_trips_a_fine_prune_fraction():
    c = resolve("d8+prune0.3333333@8")
    assert resolve(c.name).levers == c.levers


def test_name_of_a_tiny_prune_fraction_resolves():
    c = resolve("d8+prune0.00001@8")
    assert resolve(c.name).levers == c.levers


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("spec, phrase", [
    ("d8+foo", "unknown lever 'foo'"),
    ("d8+", "unknown lever ''"),
    ("d8+kv1", "unknown lever 'kv1'"),
    ("d8+cfgstop", "unknown lever 'cfgstop'"),
    ("d8+cfgstop-1", "unknown lever 'cfgstop-1'"),
    ("+prune0.5@8", "has no plan before its levers"),
    ("", "has no plan before its levers"),
    ("d8+cfgstop8+cfgstop7", "cfg_stop is set twice ('cfgstop7' repeats it)"),
    ("d8+kv1,2+kvkeep0,1", "kv_keep is set twice"),
    ("d8+prune0.5@8+prune0.25@9", "prune is set twice"),
    ("d8+guide=d2+autoguide=d4", "guide_plan is set twice"),
    ("d8+prune2@8", "0 < KEEP <= 1"),
    ("d8+prune0@8", "0 < KEEP <= 1"),
    ("d8+prune0.5", "cannot read prune '0.5'"),
    ("d8+prune0.5@", "cannot read prune"),
])
def test_spec_errors_name_the_problem_and_show_the_example(spec, phrase):
    with pytest.raises(ValueError) as err:
        resolve(spec)
    message = str(err.value)
    assert phrase in message, message
    assert EXAMPLE in message, message
    assert "Traceback" not in message


@pytest.mark.parametrize("spec, settings, phrase", [
    ("d8+cfgstop11", SamplingConfig(), "cfg_stop must be a scale index in 0..10"),
    ("d8+cfgstop8", SamplingConfig(cfg=0), "guidance is off (cfg 0)"),
    ("d8+guide=d2", SamplingConfig(cfg=0), "guidance is off (cfg 0)"),
    ("d8+autoguide=d8", SamplingConfig(), "guide_class 'same'"),
    ("d8+guide=d31", SamplingConfig(), "subnet_depth must be in 1..30"),
    ("d8+guide=x", SamplingConfig(), "cannot read plan 'x'"),
    ("d31+cfgstop8", SamplingConfig(), "subnet_depth must be in 1..30"),
    ("d8+prune0.5@10", SamplingConfig(), "first pruned scale must be in 0..9"),
])
def test_bad_values_for_the_model(spec, settings, phrase):
    with pytest.raises(ValueError) as err:
        resolve(spec, settings)
    assert phrase in str(err.value), str(err.value)


@pytest.mark.parametrize("spec, settings", [
    ("d8+cfgstop11", SamplingConfig()),
    ("d8+cfgstop8", SamplingConfig(cfg_stop=7)),
])
def test_every_configuration_error_shows_the_example(spec, settings):
    with pytest.raises(ValueError) as err:
        resolve(spec, settings)
    assert EXAMPLE in str(err.value)


@pytest.mark.parametrize("spec, settings, shown", [
    ("d8+cfgstop8", SamplingConfig(cfg_stop=7), ("cfg_stop to 8", "set it to 7")),
    ("d8+prune0.5@8", SamplingConfig(prune="0.25@8"), ("(0.5, 8)", "(0.25, 8)")),
    ("d8+kv1,2", SamplingConfig(kv_keep=(1, 3)), ("(1, 2)", "(1, 3)")),
    ("d8+guide=d2", SamplingConfig(guide_plan="d4"), ("guide_plan to d2", "set it to d4")),
    ("full+autoguide=d2", SamplingConfig(guide_plan="d4"), ("d2", "d4")),
])
def test_flags_and_spec_must_agree(spec, settings, shown):
    with pytest.raises(ValueError) as err:
        resolve(spec, settings)
    message = str(err.value)
    assert f"configuration {spec!r}" in message and "give it one way" in message, message
    assert all(s in message for s in shown), message


def test_flags_that_agree_with_the_spec_or_add_levers_are_fine():
    both = resolve("d8+cfgstop8", SamplingConfig(cfg_stop=8))
    assert both.name == "d8+cfgstop8" and both.levers == resolve("d8+cfgstop8").levers
    d2 = DepthPlan.paper(D30, 2, None, K10)
    assert resolve("d8+guide=d2", SamplingConfig(guide_plan="d2")).name == "d8+guide=d2"
    assert resolve("d8+guide=d2", SamplingConfig(guide_plan=d2)).name == "d8+guide=d2"
    assert resolve("d8+prune0.5@8", SamplingConfig(prune=(0.5, 8))).name == "d8+prune0.5@8"
    # levers given only as flags join the name; flags and spec levers merge
    assert resolve("d8", SamplingConfig(cfg_stop=8, kv_keep="1,2")).name == "d8+cfgstop8+kv1,2"
    merged = resolve("d8+prune0.5@8", SamplingConfig(cfg_stop=8))
    assert merged.name == EXAMPLE and merged.settings.cfg_stop == 8
    flags = resolve("full", SamplingConfig(guide_plan="d2", guide_class="same"))
    assert flags.name == "full+autoguide=d2"


# ------------------------------------------------------------------ the cost model under levers
# Two layers, width 64 (FFN 256), two heads, vocab 16, Cvae 4; scales of 1 and 4 tokens.
# One token through one layer: qkv 3 x 64^2 = 12288, proj 4096, FFN 2 x 64 x 256 = 32768
# multiply-adds = 49152, i.e. 98304 FLOPs. Attention of n queries over m keys: QK^T and PV,
# 2 x n x m x 64 multiply-adds -> 256 n m FLOPs. Head per position: vocab 64 x 16 and word
# embedding 4 x 64 multiply-adds -> 2560 FLOPs.
TWO = VARConfig(depth=2, embed_dim=64, num_heads=2, V=16, Cvae=4, patch_nums=(1, 2))
THREE = VARConfig(depth=2, embed_dim=64, num_heads=2, V=16, Cvae=4, patch_nums=(1, 2, 3))
TOKEN_LAYER, HEAD = 98304, 2560


def attn(n, m):
    return 256 * n * m


def config(spec, var_config=TWO, **settings):
    return Configuration.resolve(spec, var_config.depth, var_config.patch_nums,
                                 SamplingConfig(**settings))


def test_hand_counts_are_those_of_the_docstring():
    assert 2 * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 256) == TOKEN_LAYER
    assert 2 * (64 * 16 + 4 * 64) == HEAD
    plain = CostModel(TWO, rows=1).flops_per_scale(DepthPlan.full(2, 2))
    # scale 0: 1 token seeing itself; scale 1: 4 tokens seeing 1 + 4; two layers each
    assert plain == [2 * (TOKEN_LAYER + attn(1, 1)), 2 * (4 * TOKEN_LAYER + attn(4, 5))]


def test_flops_of_cfg_stop():
    """cfg_stop=1 with B = 1 (2 rows): the guiding row runs scale 0 only."""
    c = config("full+cfgstop1")
    cost = CostModel(TWO, rows=2)
    s0 = 2 * (TOKEN_LAYER + attn(1, 1))  # one row, two layers
    s1 = 2 * (4 * TOKEN_LAYER + attn(4, 5))
    assert s0 == 197120 and s1 == 796672
    assert cost.flops_per_scale(c.plan, levers=c.levers) == [2 * s0, s1]
    assert cost.flops(c.plan, levers=c.levers) == 2 * s0 + s1 == 1190912
    assert cost.flops(c.plan) == 2 * (s0 + s1)  # plain: both rows at both scales
    # with the head: both rows get logits at scale 0, only the conditional row at scale 1
    assert cost.flops_per_scale(c.plan, include_head=True, levers=c.levers) == [
        2 * (s0 + HEAD), s1 + 4 * HEAD]
    # cfg_stop=0: one row at every scale, as without guidance
    stop0 = config("full+cfgstop0")
    assert cost.flops(stop0.plan, True, stop0.levers) == CostModel(TWO, rows=1).flops(
        stop0.plan, True) == s0 + s1 + 5 * HEAD


def test_flops_of_a_guide_plan():
    """Guiding rows under [[0],[1]]: layer 0 at scale 0 (1 token), layer 1 at scale 1 (4 tokens,
    seeing only its own 4: layer 1 skipped scale 0)."""
    c = config("full+guide=[[0],[1]]")
    cost = CostModel(TWO, rows=2)
    cond = 2 * (TOKEN_LAYER + attn(1, 1)) + 2 * (4 * TOKEN_LAYER + attn(4, 5))
    guide = (TOKEN_LAYER + attn(1, 1)) + (4 * TOKEN_LAYER + attn(4, 4))
    assert cost.flops(c.plan, levers=c.levers) == cond + guide
    assert cost.flops(c.plan, include_head=True, levers=c.levers) == cond + guide + 2 * 5 * HEAD


def test_flops_of_prune():
    """prune=(0.5, 1): scale 1 runs 2 of its 4 positions, which see scale 0's 1 and each other;
    the head still gives every position logits."""
    c = config("full+prune0.5@1", cfg=0.0)
    one = CostModel(TWO, rows=1)
    s0 = 2 * (TOKEN_LAYER + attn(1, 1))
    s1 = 2 * (2 * TOKEN_LAYER + attn(2, 3))
    assert one.flops_per_scale(c.plan, levers=c.levers) == [s0, s1] == [197120, 396288]
    assert one.flops(c.plan, include_head=True, levers=c.levers) == s0 + s1 + (1 + 4) * HEAD
    guided = config("full+prune0.5@1")
    assert CostModel(TWO, rows=6).flops(guided.plan, True, guided.levers) == 6 * (
        s0 + s1 + 5 * HEAD)  # B = 3: both groups prune


def test_flops_of_kv_keep():
    """Three scales (1, 4, 9 tokens). kv_keep=(0, 0) on two scales: scale 1 sees only itself.
    kv_keep=(0, 1) on three: scale 2 sees scales 1 and 2, not 0; a layer that skipped scale 1
    sees only scale 2."""
    c = config("full+kv0,0", cfg=0.0)
    assert CostModel(TWO).flops(c.plan, levers=c.levers) == (
        2 * (TOKEN_LAYER + attn(1, 1)) + 2 * (4 * TOKEN_LAYER + attn(4, 4)))
    gappy = config("[[0,1],[0],[0,1]]+kv0,1", THREE, cfg=0.0)
    per_scale = CostModel(THREE).flops_per_scale(gappy.plan, levers=gappy.levers)
    assert per_scale == [2 * (TOKEN_LAYER + attn(1, 1)),
                         4 * TOKEN_LAYER + attn(4, 5),
                         (9 * TOKEN_LAYER + attn(9, 13)) + (9 * TOKEN_LAYER + attn(9, 9))]
    plain = CostModel(THREE).flops_per_scale(gappy.plan)
    assert plain[2] == (9 * TOKEN_LAYER + attn(9, 14)) + (9 * TOKEN_LAYER + attn(9, 10))
    first = config("full+kv1,0", THREE, cfg=0.0)  # scale 2 sees scale 0 and itself
    assert CostModel(THREE).flops_per_scale(first.plan, levers=first.levers)[2] == 2 * (
        9 * TOKEN_LAYER + attn(9, 10))


def test_token_layers_under_levers():
    """Summed over all rows' work, divided by the rows of the plain pass."""
    full = DepthPlan.full(2, 2)
    two_rows = CostModel(TWO, rows=2)
    assert two_rows.token_layers(full) == 1 * 2 + 4 * 2 == 10
    stop = config("full+cfgstop1")
    assert two_rows.token_layers(stop.plan, stop.levers) == (10 + 1 * 2) / 2 == 6
    prune = config("full+prune0.5@1")
    assert two_rows.token_layers(prune.plan, prune.levers) == 1 * 2 + 2 * 2 == 6
    assert CostModel(TWO).token_layers(prune.plan, config("full+prune0.5@1", cfg=0.0).levers) == 6
    guide = config("full+guide=[[0],[1]]")
    assert two_rows.token_layers(guide.plan, guide.levers) == (10 + 1 + 4) / 2 == 7.5
    kv = config("full+kv0,0")
    assert two_rows.token_layers(kv.plan, kv.levers) == 10  # retention changes no work
    # guide plan = plan: the normalised configuration has no levers, the plain number ...
    same = config("full+guide=full")
    assert same.levers.is_neutral and two_rows.token_layers(same.plan, same.levers) == 10
    # ... and so does a neutral Levers built by hand (both groups, each half the rows)
    neutral = Levers.build({"cfg_stop": 2}, full, TWO.patch_nums, guided=True)
    assert neutral.is_neutral
    assert two_rows.token_layers(full, neutral) == 10
    assert two_rows.flops(full, True, neutral) == two_rows.flops(full, True)


def test_kv_peak_under_cfg_stop_by_hand():
    """cfg_stop=1, B = 1: the conditional row keeps 1 token per layer (2); the guiding row keeps
    nothing (its only scale is every layer's last) and peaks at 2 + 1 new; the conditional
    row's layer 0 at scale 1 holds 2 + 4 new = 6 token-layers of one row (64 x 2 x 4 B = 512)."""
    c = config("full+cfgstop1")
    cost = CostModel(TWO, "fp32", rows=2)
    assert cost.kv_peak_bytes(c.plan, c.levers) == 6 * 512
    assert cost.kv_peak_bytes(c.plan) == 2 * 6 * 512


# ------------------------------------------------------------------ the command line
def sample(tmp_path, name, *argv):
    report = tmp_path / f"{name}.json"
    code = main(["sample", "--model", "builtin", "--num", "2", "--out",
                 str(tmp_path / f"{name}.png"), "--json", str(report), *argv])
    assert code == 0
    return json.loads(report.read_text())


def reference_flops(var_config, groups, sizes, visible):
    """The module docstring's count: every group (plan, scales run, rows), head included."""
    D, F = var_config.width, round(var_config.width * var_config.mlp_ratio)
    per = 2 * (3 * D * D + D * D + 2 * D * F)
    head = 2 * D * var_config.V + 2 * var_config.Cvae * D
    total = 0
    for plan, stop, rows in groups:
        for k in range(stop):
            total += rows * var_config.patch_nums[k] ** 2 * head
            for layer in plan.layer_sets[k]:
                seen = [s for s in range(k) if layer in plan.layer_sets[s] and visible(s, k)]
                total += rows * (sizes[k] * per + 4 * sizes[k] * (sizes[k] + sum(
                    sizes[s] for s in seen)) * D)
    return total


def test_sample_runs_a_configuration_and_reports_it(tmp_path):
    data = sample(tmp_path, "levers", "--plan", "d2+cfgstop4+prune0.5@4")
    assert data["configuration"] == "d2+cfgstop4+prune0.5@4" and data["plan"] == "d2"
    assert data["settings"]["cfg_stop"] == 4 and data["settings"]["prune"] == [0.5, 4]
    assert data["kv_peak_bytes"] == data["predicted_kv_peak_bytes"] > 0
    # builtin: 8 layers, scales 1, 4, 9, 16, 36, 64; d2 runs all 8 layers at scales 0-3 and
    # layers 0 and 7 after; pruning runs 18 and 32 positions at scales 4 and 5; the guiding rows
    # stop after scale 3. Per image: 8 x 30 + 2 x (18 + 32) = 340 and 8 x 30 = 240, over the
    # 2 rows of the plain pass.
    assert data["token_layers"] == (340 + 240) / 2 == 290
    var_config = load_model("builtin")[0].config
    assert (var_config.depth, var_config.width, var_config.V, var_config.Cvae) == (8, 128, 512, 16)
    d2 = DepthPlan.paper(8, 2, None, 6)
    guide = DepthPlan(d2.layer_sets[:4], 8)
    expected = reference_flops(var_config, [(d2, 6, 2), (guide, 4, 2)], [1, 4, 9, 16, 18, 32],
                               lambda s, k: True)
    assert data["gflops"] == pytest.approx(expected / 1e9, rel=1e-12)
    assert data["transformer_s"] > 0 and data["decoder_s"] > 0
    assert re.fullmatch("[0-9a-f]{64}", data["indices_sha256"])
    plain = sample(tmp_path, "plain", "--plan", "d2")
    assert plain["configuration"] == "d2" and plain["token_layers"] == 8 * 30 + 2 * 100
    assert plain["kv_peak_bytes"] > data["kv_peak_bytes"] and plain["gflops"] > data["gflops"]
    assert plain["indices_sha256"] != data["indices_sha256"]


def test_neutral_lever_flags_sample_exactly_the_plain_tokens(tmp_path):
    plain = sample(tmp_path, "plain", "--plan", "d2")
    neutral = sample(tmp_path, "neutral", "--plan", "d2", "--cfg-stop", "6", "--prune", "1.0@0",
                     "--kv-keep", "0,5", "--guide-plan", "d2")
    assert neutral["configuration"] == "d2"
    assert neutral["indices_sha256"] == plain["indices_sha256"]
    assert neutral["kv_peak_bytes"] == plain["kv_peak_bytes"]
    assert neutral["token_layers"] == plain["token_layers"]
    # the same lever as a flag or in the spec samples the same tokens
    flag = sample(tmp_path, "flag", "--plan", "d2", "--cfg-stop", "4")
    spec = sample(tmp_path, "spec", "--plan", "d2+cfgstop4")
    assert flag["configuration"] == spec["configuration"] == "d2+cfgstop4"
    assert flag["indices_sha256"] == spec["indices_sha256"] != plain["indices_sha256"]


@pytest.mark.parametrize("argv, phrases", [
    (["--plan", "d2+foo"], ["unknown lever 'foo'", EXAMPLE]),
    (["--plan", "d2+prune0.5"], ["cannot read prune", EXAMPLE]),
    (["--plan", "+cfgstop4"], ["no plan before its levers", EXAMPLE]),
    (["--plan", "d2+cfgstop9"], ["cfg_stop must be a scale index in 0..6"]),
    (["--plan", "d2+cfgstop4", "--cfg-stop", "3"], ["give it one way"]),
    (["--prune", "0.5"], ["cannot read prune", "e.g. 0.5@8"]),
    (["--kv-keep", "1"], ["cannot read kv_keep", "e.g. 1,2"]),
    (["--cfg", "0", "--guide-plan", "d4"], ["guidance is off", "e.g. --cfg 1.5"]),
    (["--guide-class", "same"], ["guide_class 'same'", "guide_plan='d2'"]),
])
def test_bad_configurations_exit_with_a_message(tmp_path, capsys, argv, phrases):
    code = main(["sample", "--model", "builtin", "--num", "1", "--out", str(tmp_path / "x.png"),
                 *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("variant sample: error:")
    for phrase in phrases:
        assert phrase in err, err
    assert not (tmp_path / "x.png").exists()


def test_sample_help_shows_every_lever_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    flags = ["--cfg-stop", "--guide-plan", "--guide-class", "--prune", "--kv-keep"]
    for i, flag in enumerate(flags):
        start = text.index(f" {flag} ")
        stop = text.index(f" {flags[i + 1]} ", start) if i + 1 < len(flags) else len(text)
        assert "e.g." in text[start:stop], (flag, text[start:stop])
    assert EXAMPLE in text


@pytest.mark.parametrize("command", [["eval"], ["analyze", "pareto"]])
def test_other_sampling_commands_help_shows_the_lever_flags(capsys, command):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "e.g. --cfg-stop 8" in text and "e.g. --kv-keep 1,2" in text


def test_a_guide_plan_that_differs_only_after_cfg_stop_is_dropped():
    # d2 runs the full network in the bridge zone (scales 0-5), so with guidance stopping at
    # scale 4 the guiding rows run exactly the plan's layers: the same configuration
    c = resolve("full+cfgstop4+guide=d2")
    assert c.name == "full+cfgstop4" and c.levers.get("guide_plan") is None
    assert resolve("full+cfgstop8+guide=d2").name == "full+cfgstop8+guide=d2"
    with pytest.raises(ValueError, match="guides the model by itself"):
        resolve("full+cfgstop4+autoguide=d2")
