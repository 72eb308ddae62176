"""Intervals over seeds, by hand."""

import math

import pytest

from variant.analysis.stats import difference_interval, interval, t95


def test_welch_difference_by_hand():
    # a: mean 2, variance 1, n 3; b: mean 5, variance 2, n 2
    got = difference_interval([1.0, 2.0, 3.0], [4.0, 6.0])
    se2 = 1 / 3 + 2 / 2
    # Welch: se2^2 / ((1/3)^2 / 2 + 1^2 / 1) = 32/19 = 1.68 -> t of 1 degree of freedom
    assert got["df"] == pytest.approx(32 / 19) and got["diff"] == pytest.approx(-3.0)
    half = 12.706 * math.sqrt(se2)
    assert got["low"] == pytest.approx(-3 - half) and got["high"] == pytest.approx(-3 + half)


def test_welch_with_equal_sizes_and_spreads_has_2n_minus_2_degrees_of_freedom():
    got = difference_interval([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    assert got["df"] == pytest.approx(8.0) and got["diff"] == pytest.approx(-1.0)
    half = 2.306 * math.sqrt(2.5 / 5 + 2.5 / 5)  # t(0.975, 8)
    assert (got["low"], got["high"]) == (pytest.approx(-1 - half), pytest.approx(-1 + half))


def test_too_few_values_give_no_interval():
    assert difference_interval([1.0], [2.0, 3.0])["low"] is None
    assert difference_interval([], [2.0])["diff"] is None
    assert difference_interval([None, 2.0], [1.0])["diff"] == pytest.approx(1.0)
    flat = difference_interval([2.0, 2.0], [1.0, 1.0])  # no spread at all: no interval
    assert flat["diff"] == pytest.approx(1.0) and flat["low"] is None and flat["high"] is None


def test_t_quantiles_round_down_and_end_at_the_normal():
    assert t95(1) == 12.706 and t95(1.9) == 12.706 and t95(4) == 2.776
    assert t95(30) == 2.042 and t95(31) == 1.96 and t95(0.5) == 12.706


def test_interval_by_hand():
    got = interval([1, 2, 3])
    sd = 1.0  # sqrt(((1-2)^2 + 0 + (3-2)^2) / 2)
    half = 4.303 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert got["mean"] == pytest.approx(2.0)
    assert got["low"] == pytest.approx(2 - half) and got["high"] == pytest.approx(2 + half)
    assert got["n"] == 3 and got["per_seed"] == [1.0, 2.0, 3.0]
    # two values: t = 12.706 (1 degree of freedom)
    two = interval([10.0, 14.0])
    half2 = 12.706 * math.sqrt(8) / math.sqrt(2)
    assert two["low"] == pytest.approx(12 - half2) and two["high"] == pytest.approx(12 + half2)
    # beyond 30 degrees of freedom: 1.96
    many = interval(list(range(40)))
    sd40 = math.sqrt(sum((v - 19.5) ** 2 for v in range(40)) / 39)
    assert many["high"] - many["mean"] == pytest.approx(1.96 * sd40 / math.sqrt(40))


def test_interval_one_value_and_missing_values():
    one = interval([5.0])
    assert one["mean"] == 5.0 and one["low"] is None and one["high"] is None and one["n"] == 1
    skipped = interval([1.0, None, float("nan"), 3.0])
    assert skipped["n"] == 2 and skipped["mean"] == pytest.approx(2.0)
    assert skipped["per_seed"] == [1.0, 3.0]
    assert skipped["high"] - skipped["mean"] == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2))
    lone = interval([None, 4.0, float("nan")])
    assert lone["n"] == 1 and lone["mean"] == 4.0 and lone["low"] is None
    empty = interval([None, float("nan")])
    assert empty["mean"] is None and empty["n"] == 0
