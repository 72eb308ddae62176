"""Intervals over seeds, by hand."""

import math

import pytest

from variant.analysis.stats import difference_interval, t95


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
    assert difference_interval([2.0, 2.0], [1.0, 1.0])["low"] == pytest.approx(1.0)


def test_t_quantiles_round_down_and_end_at_the_normal():
    assert t95(1) == 12.706 and t95(1.9) == 12.706 and t95(4) == 2.776
    assert t95(30) == 2.042 and t95(31) == 1.96 and t95(0.5) == 12.706
