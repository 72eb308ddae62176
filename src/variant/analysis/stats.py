"""Intervals over seeds: the mean with its 95% Student-t interval, and the difference of two
means with its 95% Welch interval (unequal variances). Each seed is one independent measurement
(its own images, or its own training run)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# two-sided 95% Student-t quantiles by degrees of freedom (1..30); 1.96 beyond
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: float) -> float:
    """The two-sided 95% t quantile at `df` degrees of freedom, rounded down to a whole number
    (the wider interval) for Welch's fractional ones."""
    whole = max(1, math.floor(df))
    return _T95[whole - 1] if whole <= len(_T95) else 1.96


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


# The values each quality metric can take: an interval is cut to them (a 2-seed FID interval of
# mean +- 12.7 standard errors must not reach below 0).
METRIC_RANGES = {"fid": (0.0, None), "inception_score": (1.0, None),
                 "inception_score_std": (0.0, None), "precision": (0.0, 1.0),
                 "recall": (0.0, 1.0), "class_accuracy": (0.0, 1.0)}


def interval(values: Sequence[float], value_range: tuple = (None, None)) -> dict:
    """Mean and 95% Student-t interval over seeds (a single value: no interval), cut to
    `value_range` (lowest, highest; None: unbounded), e.g. `METRIC_RANGES['fid']`."""
    out = _interval(values)
    lo, hi = value_range
    if out["low"] is not None and lo is not None and out["low"] < lo:
        out["low"] = lo
    if out["high"] is not None and hi is not None and out["high"] > hi:
        out["high"] = hi
    return out


def _interval(values: Sequence[float]) -> dict:
    vals = _finite(values)
    if not vals:
        return {"mean": None, "low": None, "high": None, "n": 0, "per_seed": list(values)}
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1, "per_seed": vals}
    half = t95(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(vals),
            "per_seed": vals}


def difference_interval(a: Sequence[float], b: Sequence[float]) -> dict:
    """mean(a) - mean(b) with its 95% Welch interval; no interval with fewer than 2 of either
    (or when both have no spread)."""
    xa, xb = _finite(a), _finite(b)
    if not xa or not xb:
        return {"diff": None, "low": None, "high": None, "df": None}
    diff = statistics.fmean(xa) - statistics.fmean(xb)
    if len(xa) < 2 or len(xb) < 2:
        return {"diff": diff, "low": None, "high": None, "df": None}
    va, vb = statistics.variance(xa) / len(xa), statistics.variance(xb) / len(xb)
    if va + vb == 0:  # no spread on either side: no interval, not a zero-width one
        return {"diff": diff, "low": None, "high": None, "df": None}
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = t95(df) * math.sqrt(va + vb)
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df}
