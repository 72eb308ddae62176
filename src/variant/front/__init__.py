"""A `variant tune` front (`front.json`): reading and checking it, and choosing from it.

`load_front` validates what the planner, the studio and the figure read; `front_options` gives its
configurations with their measured costs to the one chooser (`efficiency.choice.choose`: `variant
plan --front`, `variant studio --front`);
`check_front_device`, `check_front_model` and `check_front_settings` refuse fronts whose numbers do
not hold here (latency from another device, another architecture, other sampling settings).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..efficiency.bench import device_name
from ..efficiency.choice import Option
from ..sampling.settings import SamplingConfig

FRONT_FORMAT = "variant-front"
COST_AXES = {"latency": "total_s", "kv": "kv_peak_bytes", "memory": "peak_memory_bytes"}


def format_front(front: dict) -> str:
    """Markdown: one row per configuration, front membership marked."""
    key = front["meta"]["metric_key"]
    lines = [f"| configuration | family | {key} (95% interval) | total s | KV | peak memory | "
             "GFLOPs/img | front (latency / KV) |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in sorted(front["rows"], key=lambda r: r["cost"]["total_s"]):
        q, c = r["quality"][key], r["cost"]
        band = "" if q["low"] is None else f" ({q['low']:.2f}–{q['high']:.2f})"
        mem = "—" if c["peak_memory_bytes"] is None else f"{c['peak_memory_bytes'] / 2**20:.0f} MiB"
        marks = " / ".join("yes" if r["on_front"].get(a) else "—" for a in ("latency", "kv"))
        lines.append(f"| {r['spec']} | {r['family']} | {q['mean']:.2f}{band} | "
                     f"{c['total_s']:.3f} | {c['kv_peak_bytes'] / 2**20:.2f} MiB | {mem} | "
                     f"{c['gflops_per_image']:.2f} | {marks} |")
    return "\n".join(lines)


def load_front(path: str | Path) -> dict:
    """A `front.json` of `variant tune`; ValueError naming the problem otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"front file {path} not found; make one with `variant tune`.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON ({err}); give the front.json `variant tune` "
                         "wrote.") from None
    if not isinstance(data, dict) or data.get("format") != FRONT_FORMAT or not data.get("rows"):
        raise ValueError(f"{path} is not a `variant tune` front (format {FRONT_FORMAT!r} with "
                         "rows); give the front.json `variant tune` wrote.")
    problem = _front_problem(data)
    if problem:
        raise ValueError(f"{path} is not a complete `variant tune` front: {problem}; give the "
                         "front.json `variant tune` wrote, or rerun it (it resumes).")
    return data


_META_KEYS = ("model", "device_name", "threads", "bench_batch", "seeds", "num_per_class",
              "num_classes", "metric", "metric_key", "settings", "depth", "num_scales")
_COST_KEYS = ("total_s", "total_q1_s", "total_q3_s", "kv_peak_bytes", "peak_memory_bytes",
              "gflops_per_image")


def _front_problem(data: dict) -> str | None:
    """What a front's JSON lacks that the planner, the studio and the figure read, or None."""
    meta = data.get("meta")
    if not isinstance(meta, dict):
        return "no 'meta'"
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        return f"'meta' lacks {', '.join(missing)}"
    try:
        front_settings(data)
    except (TypeError, ValueError) as err:
        return f"its sampling settings cannot be read ({err})"
    key = meta["metric_key"]
    for i, row in enumerate(data["rows"]):
        name = f"row {i} ({row.get('spec', 'no spec')})" if isinstance(row, dict) else f"row {i}"
        if not isinstance(row, dict) or not isinstance(row.get("spec"), str):
            return f"{name} has no spec"
        quality, cost = row.get("quality", {}).get(key), row.get("cost")
        if not isinstance(quality, dict) or not {"mean", "low", "high"} <= set(quality):
            return f"{name} has no {key} with mean, low and high"
        if not isinstance(cost, dict) or not set(_COST_KEYS) <= set(cost):
            lacks = [k for k in _COST_KEYS if k not in (cost or {})]
            return f"{name}'s cost lacks {', '.join(lacks)}"
        if not isinstance(row.get("on_front"), dict) or "family" not in row:
            return f"{name} has no family or front marks"
    return None


# ---------------------------------------------------------------------- choosing from a front
def row_cost(front: dict, row: dict, axis: str, batch: int | None = None) -> float | None:
    """A configuration's measured cost on `axis` ("latency", "kv", "memory") for `batch` images
    (default: the front's timing batch): latency and KV bytes scale linearly from the timing
    batch (exact for KV, an approximation for latency), memory is as measured; None when not
    measured."""
    value = row["cost"].get(COST_AXES[axis])
    if value is None or axis == "memory" or batch is None:
        return value
    return value * (batch / front["meta"]["bench_batch"])


def front_options(front: dict, batch: int | None = None) -> list[Option]:
    """The front's configurations with their measured costs for `batch` images (`row_cost`) and
    mean quality, for `efficiency.choice.choose`; rows without a mean are left out."""
    key = front["meta"]["metric_key"]
    return [Option(r["spec"], {axis: row_cost(front, r, axis, batch) for axis in COST_AXES},
                   r["quality"][key]["mean"], r)
            for r in front["rows"] if r["quality"][key]["mean"] is not None]


def check_front_device(front: dict, device: str, threads: int, allow_other: bool) -> None:
    """Latency measured elsewhere does not transfer: refuse unless `allow_other`."""
    meta = front["meta"]
    here = device_name(torch.device(device))
    if allow_other or (meta["device_name"] == here and meta["threads"] == threads):
        return
    raise ValueError(
        f"the front's latencies were measured on {meta['device_name']} with {meta['threads']} "
        f"threads, not on this {here} with {threads}; rerun `variant tune` here, or pass "
        "--allow-other-device to use them anyway.")


def check_front_model(front: dict, var) -> None:
    """A front measured on another architecture does not describe this model. (Fronts record
    the architecture, not the weights: one of another model of the same shape passes.)"""
    meta = front["meta"]
    theirs = {"depth": meta["depth"], "scales": meta["num_scales"], "width": meta.get("width"),
              "patch sizes": meta.get("patch_nums")}
    ours = {"depth": var.depth, "scales": var.num_scales, "width": var.config.width,
            "patch sizes": list(var.patch_nums)}
    differ = [f"{k} {theirs[k]} (this model: {ours[k]})" for k in theirs
              if theirs[k] is not None and theirs[k] != ours[k]]  # width, patch sizes: newer
    if differ:
        raise ValueError(f"the front is of another architecture ({meta['model']}: "
                         f"{', '.join(differ)}); give the front `variant tune` made for this "
                         "model.")


def front_settings(front: dict) -> SamplingConfig:
    """The sampling settings the front was measured with (no seed: each seed is a sample)."""
    return SamplingConfig(**{**front["meta"]["settings"], "seed": None})


def check_front_settings(front: dict, settings: SamplingConfig) -> None:
    """A front's qualities hold for the sampling settings it was measured with."""
    measured = front_settings(front)
    differ = [f"{name} {getattr(settings, name)} (the front: {getattr(measured, name)})"
              for name in ("cfg", "top_k", "top_p", "more_smooth", "dtype")
              if getattr(settings, name) != getattr(measured, name)]
    if differ:
        raise ValueError("budgets pick from the measured front, whose quality holds for the "
                         "settings it was measured with; this request has "
                         + ", ".join(differ) + ". Set those, or give a plan instead of a "
                         "budget.")
