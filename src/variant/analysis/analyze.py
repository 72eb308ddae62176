"""Analyses of the paper: the scale-depth asymmetry study and the full-vs-subnet Pareto figure.

Asymmetry: run a subnet (default 50% of the depth) only at one range of scales, the full network
elsewhere, and score each such plan; a range's FLOP share and latency share say what running the
subnet there could save. Ranges are 1-based and inclusive, as in the paper (r1-r3, r4-r6, r7-r10).

Pareto: for several supernets (e.g. fixed ratios vs the progressive schedule), plot each one's
full-network quality against its subnet quality; points no other supernet beats on both axes
form the front.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..models.cost import CostModel
from ..sampling.plan import (
    DepthPlan,
    check_scale_range,
    default_bridge,
    range_label,
    read_scale_range,
)

log = logging.getLogger(__name__)

# Metrics where a larger value is better; every other metric (fid) is minimised.
HIGHER_IS_BETTER = {"inception_score", "precision", "recall", "class_accuracy"}


# ------------------------------------------------------------------------------ ranges
def parse_ranges(specs: list[str], num_scales: int) -> list[tuple[int, int]]:
    """['1-3', '4-6', '7-10'] -> [(1, 3), (4, 6), (7, 10)]; 1-based, inclusive, 'r7-r10' ok."""
    return [check_scale_range(read_scale_range(spec), num_scales) for spec in specs]


def default_ranges(num_scales: int) -> list[tuple[int, int]]:
    """The paper's thirds at 256 px (1-3, 4-6, 7-10 of 10), scaled to K scales: the middle
    range ends with the default bridge zone."""
    a = min(max(1, round(0.3 * num_scales)), num_scales)
    b = min(max(a + 1, default_bridge(num_scales)), num_scales)
    ranges = [(1, a), (a + 1, b), (b + 1, num_scales)]
    return [(f, last) for f, last in ranges if f <= last]


def parse_subnet(spec: str | int, depth: int) -> int:
    """'50%' -> round(depth / 2), 'd16' or '16' -> 16, '0.25' -> round(depth / 4); at least 2."""
    text = str(spec).strip().lower()
    try:
        if text.endswith("%"):
            d = round(depth * float(text[:-1]) / 100)
        elif "." in text:
            d = round(depth * float(text))
        else:
            d = int(text[1:] if text.startswith("d") else text)
    except ValueError:
        raise ValueError(f"cannot read the subnet {spec!r}: use a depth (d8, 8) or a fraction "
                         "of the model's depth (50%, 0.5).") from None
    if d > depth:
        raise ValueError(f"subnet depth {d} exceeds the model's {depth} layers.")
    if d < min(2, depth):
        raise ValueError(f"the subnet {spec!r} has {d} layers of {depth}; a subnet needs at "
                         "least 2 (the equidistant set keeps the first and the last layer): "
                         "give a larger fraction or a depth such as d2.")
    return d


def range_plan(depth: int, num_scales: int, subnet_depth: int,
               scale_range: tuple[int, int]) -> DepthPlan:
    """The full network everywhere except the scales of `scale_range`, which run I_d."""
    return DepthPlan.subnet_on_scales(depth, subnet_depth, scale_range, num_scales)


# ------------------------------------------------------------------------------ shares
def range_shares(per_scale: list[float], ranges: list[tuple[int, int]]) -> list[float]:
    """Share of the total that each (1-based, inclusive) range of scales holds."""
    total = float(sum(per_scale))
    return [sum(per_scale[first - 1:last]) / total for first, last in ranges]


def latency_per_scale(profile: dict) -> list[float]:
    """Transformer seconds of each scale of the full plan, from `bench.profile_scales`."""
    depth = profile["model"]["depth"]
    return [s["overhead_seconds"] + depth * s["seconds_per_layer"] for s in profile["scales"]]


# ------------------------------------------------------------------------------ study
def asymmetry_plans(var_config, ranges, subnet_depth: int) -> list[DepthPlan]:
    depth, K = var_config.depth, var_config.num_scales
    return [DepthPlan.full(depth, K)] + [range_plan(depth, K, subnet_depth, r) for r in ranges]


def asymmetry_rows(var_config, ranges, subnet_depth: int, eval_rows: list[dict] | None = None,
                   profile: dict | None = None) -> list[dict]:
    """One row per plan (full first): the range, its FLOP/latency shares, the plan's FLOP
    saving, and the quality columns of `eval_rows` (`variant eval` rows, matched by plan)."""
    plans = asymmetry_plans(var_config, ranges, subnet_depth)
    cost = CostModel(var_config)
    full_flops = cost.flops_per_scale(plans[0], include_head=True)
    flop_share = range_shares(full_flops, ranges)
    latency = range_shares(latency_per_scale(profile), ranges) if profile else [None] * len(ranges)
    quality = {r["plan"]: r for r in (eval_rows or [])}
    rows = []
    for i, plan in enumerate(plans):
        r = {"plan": plan.name, "range": None if i == 0 else range_label(ranges[i - 1]),
             "subnet_depth": None if i == 0 else subnet_depth,
             "flop_share": None if i == 0 else flop_share[i - 1],
             "latency_share": None if i == 0 else latency[i - 1],
             "flop_saving": 1 - cost.flops(plan, include_head=True) / sum(full_flops)}
        r.update({k: v for k, v in quality.get(plan.name, {}).items() if k != "plan"})
        rows.append(r)
    return rows


def _cell(value, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def format_asymmetry(rows: list[dict], key: str = "fid") -> str:
    lines = [f"| plan | scales on the subnet | FLOP share | latency share | FLOP saving "
             f"| {key} | Δ{key} vs full | s/img |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    base = rows[0].get(key)
    for r in rows:
        value = r.get(key)
        delta = None if value is None or base is None or r is rows[0] else value - base
        lines.append(
            f"| {r['plan']} | {r['range'] or 'none (full network)'} "
            f"| {_cell(r['flop_share'], '{:.1%}')} | {_cell(r['latency_share'], '{:.1%}')} "
            f"| {_cell(r['flop_saving'], '{:.1%}')} | {_cell(value, '{:.3f}')} "
            f"| {_cell(delta, '{:+.3f}')} | {_cell(r.get('seconds_per_image'), '{:.3f}')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ pareto
def load_eval_results(path: str | Path) -> dict:
    """An `eval.json` of `variant eval` (a file, or the --out folder that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "eval.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; give the eval.json written by `variant eval` "
                                "or its --out folder.")
    data = json.loads(path.read_text())
    if "rows" not in data:
        raise ValueError(f"{path} has no 'rows'; it is not a `variant eval` result file.")
    return data


def pareto_table(results: dict[str, list[dict]], key: str = "fid") -> list[dict]:
    """Per supernet: the full plan's metric, each subnet plan's metric, and for each subnet plan
    whether the supernet is on the (full, subnet) Pareto front."""
    better = max if key in HIGHER_IS_BETTER else min
    table = []
    for label, rows in results.items():
        by_plan = {r["plan"]: r.get(key) for r in rows}
        if by_plan.get("full") is None:
            raise ValueError(f"the results of {label!r} have no {key!r} for the full plan; "
                             "evaluate 'full' with a metric.")
        table.append({"supernet": label, "full": by_plan["full"],
                      "subnets": {p: v for p, v in by_plan.items() if p != "full"}})
    plans = sorted({p for t in table for p in t["subnets"]}, key=_plan_order)
    for plan in plans:
        points = [(t["full"], t["subnets"].get(plan)) for t in table]
        for t, point in zip(table, points):
            t.setdefault("front", {})[plan] = point[1] is not None and not any(
                _dominates(other, point, better) for other in points if other[1] is not None)
    return table


def _dominates(a, b, better) -> bool:
    no_worse = all(better(x, y) == x for x, y in zip(a, b))
    return no_worse and a != b


def _plan_order(name: str):
    m = re.match(r"d(\d+)", name)
    return (0, -int(m.group(1)), name) if m else (1, 0, name)


def format_pareto(table: list[dict], key: str) -> str:
    plans = sorted({p for t in table for p in t["subnets"]}, key=_plan_order)
    lines = ["| supernet | full " + key + " | " + " | ".join(f"{p} {key}" for p in plans) + " |",
             "|---|---:|" + "---:|" * len(plans)]
    for t in table:
        cells = []
        for p in plans:
            v = t["subnets"].get(p)
            star = " ★" if t["front"].get(p) else ""
            cells.append(_cell(v, "{:.3f}") + star)
        lines.append(f"| {t['supernet']} | {t['full']:.3f} | " + " | ".join(cells) + " |")
    lines.append(f"\n★ on the Pareto front of (full {key}, subnet {key}) for that subnet")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ plots
def pyplot(path=None):
    """matplotlib.pyplot on the Agg backend, or None when the 'plot' extra is not installed
    (then saying that the figure `path`, if given, is skipped)."""
    try:  # matplotlib is optional (the 'plot' extra): imported only when a plot is asked for
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if path is not None:
            log.info("matplotlib is not installed (pip install 'variant[plot]'); skipping %s",
                     path)
        return None
    return plt


def save_figure(fig, plt, path, dpi: int = 120, layout: bool = True) -> Path:
    """Lay out (unless the caller did), write (creating the folder) and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_asymmetry(rows: list[dict], path: str | Path, key: str = "fid") -> Path | None:
    """Metric per range (full network as a line) beside the ranges' FLOP and latency shares."""
    plt = pyplot(path)
    if plt is None:
        return None
    ranged = rows[1:]
    x = list(range(len(ranged)))
    labels = [r["range"] for r in ranged]
    fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
    values = [r.get(key) for r in ranged]
    if all(v is not None for v in values) and rows[0].get(key) is not None:
        ax_q.bar(x, values, color="tab:blue")
        ax_q.axhline(rows[0][key], color="k", ls="--", label="full network")
        ax_q.set_ylabel(key)
        ax_q.legend()
    else:
        ax_q.text(0.5, 0.5, f"no {key} (run with a metric)", ha="center", transform=ax_q.transAxes)
    ax_q.set_title(f"subnet d{ranged[0]['subnet_depth']} on one range of scales")
    shares = [("flop_share", "FLOP share"), ("latency_share", "latency share")]
    for j, (field_name, name) in enumerate(shares):
        vals = [r[field_name] for r in ranged]
        if all(v is not None for v in vals):
            ax_s.bar([i + (j - 0.5) * 0.4 for i in x], [100 * v for v in vals], width=0.4,
                     label=name)
    ax_s.set_ylabel("% of the full network")
    ax_s.legend()
    for ax in (ax_q, ax_s):
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.set_xlabel("scales running the subnet")
    return save_figure(fig, plt, path)


def plot_pareto(table: list[dict], path: str | Path, key: str = "fid") -> Path | None:
    """Full-network metric (x) against subnet metric (y): one marker series per subnet plan, the
    runs unjoined (they are unrelated); a solid line only through each plan's Pareto front."""
    plt = pyplot(path)
    if plt is None:
        return None
    plans = sorted({p for t in table for p in t["subnets"]}, key=_plan_order)
    fig, ax = plt.subplots(figsize=(6, 5))
    for plan in plans:
        pts = sorted((t["full"], t["subnets"][plan], t["supernet"], t["front"][plan])
                     for t in table if t["subnets"].get(plan) is not None)
        line = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", linestyle="none",
                       label=plan)[0]
        front = [p for p in pts if p[3]]
        ax.plot([p[0] for p in front], [p[1] for p in front], "-", color=line.get_color(), lw=2)
        for fx, fy, name, _ in pts:
            ax.annotate(name, (fx, fy), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"full network {key}")
    ax.set_ylabel(f"subnet {key}")
    ax.set_title("full vs subnet quality per supernet (solid: Pareto front)")
    ax.legend()
    return save_figure(fig, plt, path)
