"""Property tests (Hypothesis) for what users type and what files hold (issue 18).

For each reader: any input either parses to a value that round-trips, or raises the project's
error type (ValueError, or argparse's ArgumentTypeError for argument types) with a message;
never another exception, never a silently coerced value.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install -e '.[dev]' (hypothesis)")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from variant.cli import checks  # noqa: E402
from variant.efficiency.choice import Budget, choose  # noqa: E402
from variant.front import front_options, load_front, row_cost  # noqa: E402
from variant.sampling.configuration import Configuration  # noqa: E402
from variant.sampling.plan import DepthPlan, parse_spec  # noqa: E402
from variant.sampling.settings import SamplingConfig  # noqa: E402
from variant.units import parse_duration, parse_size  # noqa: E402

FRONT = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "front" / "front.json"
FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
DEPTH, PATCH_NUMS = 8, (1, 2, 3, 4, 6, 8)  # the built-in model's shape
K = len(PATCH_NUMS)

# pieces of the spec grammar, so that many draws are valid and the rest are near misses
_PLANS = st.one_of(
    st.sampled_from(["full", "FULL", " d4 ", "d8", "4", "d0", "d9", "d2@bridge3", "d4@r2-r5",
                     "d4@r5", "d4@r6-r2", "d99@bridge1", "[[0]]", "[]"]),
    st.builds(lambda d, b: f"d{d}@bridge{b}", st.integers(-2, 12), st.integers(-2, 9)),
    st.builds(lambda d, a, b: f"d{d}@r{a}-r{b}", st.integers(0, 10), st.integers(0, 8),
              st.integers(0, 8)),
    st.text(max_size=12))
_LEVERS = st.one_of(
    st.builds(lambda k: f"cfgstop{k}", st.integers(0, 8)),
    st.builds(lambda p: f"guide={p}", st.sampled_from(["d2", "d4", "full", "d9", "x"])),
    st.builds(lambda p: f"autoguide={p}", st.sampled_from(["d2", "d4", "d8"])),
    st.builds(lambda f, s: f"prune{f}@{s}", st.sampled_from(["0.5", "1", "0", "2", ".25", "x"]),
              st.integers(0, 7)),
    st.builds(lambda a, b: f"kv{a},{b}", st.integers(0, 6), st.integers(0, 6)),
    st.text(max_size=8))
SPECS = st.builds(lambda plan, levers: "+".join([plan, *levers]), _PLANS,
                  st.lists(_LEVERS, max_size=3))


def _resolve(spec: str) -> Configuration:
    return Configuration.resolve(spec, DEPTH, PATCH_NUMS, SamplingConfig())


@FAST
@given(SPECS)
def test_configuration_spec_parses_and_round_trips_or_is_refused(spec):
    try:
        config = _resolve(spec)
    except ValueError as err:
        event("refused")
        assert str(err)
        return
    event("parsed")
    again = _resolve(config.name)
    assert again.plan.layer_sets == config.plan.layer_sets
    assert again.levers == config.levers and again.name == config.name
    assert all(1 <= len(s) <= DEPTH for s in config.plan.layer_sets)


@FAST
@given(st.text(max_size=40))
def test_plan_spec_of_any_text_parses_or_is_refused(text):
    try:
        parse_spec(text)
        plan = DepthPlan.from_spec(text, DEPTH, K)
    except ValueError as err:
        assert str(err)
        return
    assert DepthPlan.from_spec(plan.name, DEPTH, K) == plan


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=True)
    | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=K + 1), max_leaves=40)


_LAYER_SETS = st.lists(st.sets(st.integers(0, DEPTH - 1), min_size=1).map(sorted), min_size=K,
                      max_size=K)  # valid plans, so that both outcomes are exercised


@FAST
@given(st.one_of(JSON_VALUES, _LAYER_SETS,
                 st.lists(st.lists(st.integers(-1, DEPTH), max_size=DEPTH + 1), min_size=K,
                          max_size=K)))
def test_json_plan_is_read_exactly_or_refused(value):
    text = json.dumps(value)  # NaN and Infinity appear as JSON's unofficial constants
    if not text.startswith("["):
        text = "[" + text + "]"
    try:
        plan = DepthPlan.from_spec(text, DEPTH, K)
    except ValueError as err:
        event("refused")
        assert str(err)
        return
    event("parsed")
    # read exactly what was written: no 7.9 -> 7, "07" -> 7, true -> 1
    written = json.loads(text)
    assert [[type(i) for i in s] for s in written] == [[int] * len(s) for s in written]
    assert [list(s) for s in plan.layer_sets] == written
    assert DepthPlan.from_spec(plan.name, DEPTH, K) == plan


# ------------------------------------------------------------------------------- fronts
@pytest.fixture(scope="module")
def good_front():
    return json.loads(FRONT.read_text())


def _paths(value, prefix=()):
    """Every (path to a value) inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@FAST
@given(data=st.data())
def test_damaged_front_loads_and_is_usable_or_is_refused_naming_the_file(
        good_front, tmp_path_factory, data):
    front = json.loads(json.dumps(good_front))
    paths = [p for p in _paths(front) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = front
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = data.draw(JSON_VALUES | st.floats() | st.integers())
        except (KeyError, IndexError, TypeError):  # an earlier change removed this place
            continue
    target = tmp_path_factory.mktemp("front") / "front.json"
    target.write_text(json.dumps(front))
    try:
        loaded = load_front(target)
    except ValueError as err:
        event("refused")
        assert str(target) in str(err)
        return
    event("loaded")
    # what load_front accepts, the planner can use: costs are numbers >= 0 or missing
    for row in loaded["rows"]:
        for axis in ("latency", "kv", "memory"):
            cost = row_cost(loaded, row, axis, batch=3)
            assert cost is None or (math.isfinite(cost) and cost >= 0)
    options = front_options(loaded, batch=3)
    try:
        choice = choose(Budget(max_kv=2**40), options)
    except ValueError as err:  # e.g. no row has a measured KV
        assert str(err)
        return
    assert choice.chosen in options


# ------------------------------------------------------------------------------- budgets
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "K": 2**10, "M": 2**20,
               "G": 2**30, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


@FAST
@given(st.integers(0, 10**6), st.sampled_from(sorted(_SIZE_UNITS)), st.sampled_from(["", " "]))
def test_size_with_unit_round_trips(number, unit, space):
    assert parse_size(f"{number}{space}{unit}") == number * _SIZE_UNITS[unit]


@FAST
@given(st.integers(0, 10**6), st.sampled_from(sorted(_TIME_UNITS)))
def test_duration_with_unit_round_trips(number, unit):
    assert parse_duration(f"{number}{unit}") == pytest.approx(number * _TIME_UNITS[unit])


@FAST
@given(st.text(max_size=30) | st.from_regex(r"\A-?[0-9.e+]{1,12} ?[a-zA-Z]{0,4}\Z"))
def test_any_budget_text_is_a_finite_amount_or_refused(text):
    for parse in (parse_size, parse_duration):
        try:
            value = parse(text)
        except ValueError as err:
            assert str(err)
            continue
        assert math.isfinite(value) and value >= 0
    for check in (checks.size, checks.duration):
        try:
            value = check(text)
        except argparse.ArgumentTypeError as err:
            assert str(err)
            continue
        assert math.isfinite(value) and value > 0


@FAST
@given(st.text(max_size=50) | st.integers().map(str) | st.floats().map(str))
def test_number_arguments_are_in_range_or_refused(text):
    for check, ok in ((checks.count, lambda v: isinstance(v, int) and v >= 1),
                      (checks.seed, lambda v: 0 <= v <= checks.SEED_MAX),
                      (checks.port, lambda v: 0 <= v <= 65535),
                      (checks.float_in(0, 1), lambda v: math.isfinite(v) and 0 <= v <= 1)):
        try:
            value = check(text)
        except argparse.ArgumentTypeError as err:
            assert str(err)
            continue
        assert ok(value)


# ------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", sorted(__import__("variant.config").config.MODEL_PRESETS))
def test_every_preset_config_round_trips_through_json(name):
    """The typed reading of config.json keeps every config the package writes loadable."""
    from variant.config import config_from_dict, config_to_dict, model_preset

    preset = model_preset(name)
    for config in (preset.var, preset.vae):
        written = json.loads(json.dumps(config_to_dict(config)))
        assert config_from_dict(type(config), written) == config


@FAST
@given(field=st.sampled_from(["depth", "embed_dim", "num_classes", "cond_drop_rate",
                              "attn_backend", "patch_nums", "shared_aln"]),
       value=JSON_VALUES | st.floats() | st.integers())
def test_a_config_field_of_any_json_value_builds_or_is_refused(field, value):
    from variant.config import VARConfig, config_from_dict, config_to_dict

    data = {**config_to_dict(VARConfig(depth=4, embed_dim=64, num_heads=4)), field: value}
    try:
        config = config_from_dict(VARConfig, data)
    except ValueError as err:
        event("refused")
        assert str(err)
        return
    event("built")
    assert config_from_dict(VARConfig, json.loads(json.dumps(config_to_dict(config)))) == config


def test_the_committed_latency_profiles_pass_their_check():
    from variant.efficiency.profile_schema import profile_problem

    repo = Path(__file__).resolve().parents[2]
    study = json.loads((repo / "docs" / "reproduction" / "asymmetry.json").read_text())
    profiles = [v for v in _values(study) if isinstance(v, dict)
                and v.get("format") == "variant-latency-profile"]
    assert profiles and all(profile_problem(p) is None for p in profiles)


def _values(value):
    yield value
    for inner in (value.values() if isinstance(value, dict) else
                  value if isinstance(value, list) else ()):
        yield from _values(inner)
