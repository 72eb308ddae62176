"""Evaluate several depth plans of one supernet: sample (sharded, resumable), pack, score, tabulate.

For each plan the images go to `{out_dir}/{slug}/` and `{out_dir}/{slug}.npz`, where slug is the
plan's name (`full`, `d8`, `d8@bridge5`, `d8@r7-r10`) or `custom-<hash>` for a JSON plan; all
ranks sample their share of every plan, then rank 0 waits (a barrier if a process group exists,
else by polling the folders) and scores them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..models.cost import CostModel
from ..sampling.configuration import Configuration, folder_name
from ..sampling.plan import DepthPlan
from .npz import check_image_batch, create_npz_from_sample_folder
from .sample_folder import (
    SamplingSpec,
    missing_indices,
    remove_stale_temporaries,
    sample_to_folder,
    wait_for_folder,
)

log = logging.getLogger(__name__)

RESULTS_NAME = "eval.json"


def plan_slug(plan: DepthPlan) -> str:
    """A folder name for a plan: its name, or a hash of its layers for a JSON (custom) plan."""
    if not plan.name.startswith("["):
        return plan.name
    digest = hashlib.sha1(json.dumps([list(s) for s in plan.layer_sets]).encode()).hexdigest()
    return f"custom-{digest[:8]}"


def _slug(name: str, plan: DepthPlan) -> str:
    """A plain plan's folder keeps `plan_slug` (folders of earlier runs resume); a plan with
    levers is named by `sampling.configuration.folder_name`."""
    return plan_slug(plan) if name == plan.name else folder_name(name)


def _runs(var, items, spec: SamplingSpec) -> list[tuple[DepthPlan, SamplingSpec, str, object]]:
    """(plan, sampling spec, name, levers) of each plan or `Configuration`, duplicates dropped."""
    runs, seen = [], set()
    for item in items:
        if isinstance(item, Configuration):
            own = dataclasses.replace(spec, settings=item.settings.replace(seed=None))
            plan, name = item.plan, item.name
            levers = None if item.levers.is_neutral else item.levers
        else:
            plan = var.resolve_plan(item)
            own, name, levers = spec, plan.name, None
        if (plan.layer_sets, levers) in seen:
            log.info("%s repeats an earlier configuration; evaluated once", name)
            continue
        seen.add((plan.layer_sets, levers))
        runs.append((plan, own, name, levers))
    return runs


def evaluate_plans(var, vae, plans: list[DepthPlan | Configuration], out_dir: str | Path,
                   spec: SamplingSpec, *,
                   metric=None, model: str = "", rank: int = 0, world_size: int = 1,
                   barrier=None, wait_timeout: float = 0.0, progress: bool = False,
                   settings: dict | None = None) -> list[dict] | None:
    """Sample this rank's share of every plan; on rank 0 also pack and score them.

    `metric`: a `QualityMetric` (None: sample and pack only). `barrier`: a callable that returns
    when every rank has finished sampling (e.g. torch.distributed.barrier); without one, rank 0
    polls for the other ranks' files for up to `wait_timeout` seconds. Returns the table rows
    (rank 0) or None (other ranks). Rows are also written to `{out_dir}/eval.json`.
    A `Configuration` (a plan with levers) samples with its own settings into a folder named by
    its spec.
    """
    out_dir = Path(out_dir)
    runs = _runs(var, plans, spec)
    reports = {}
    for plan, own, name, _ in runs:
        slug = _slug(name, plan)
        reports[slug] = sample_to_folder(
            var, vae, plan, out_dir / slug, own, model=model, rank=rank,
            world_size=world_size, progress=progress)
    if barrier is not None:
        barrier()
    if rank != 0:
        return None
    image_size = vae.config.image_size
    cost = CostModel(var.config, rows=spec.settings.rows(1))
    full_flops = cost.flops(var.full_plan())
    rows = []
    for plan, own, name, levers in runs:
        slug = _slug(name, plan)
        folder = out_dir / slug
        missing = (wait_for_folder(folder, own, image_size, wait_timeout)
                   if barrier is None and world_size > 1
                   else missing_indices(folder, own, image_size))
        if missing:
            raise ValueError(
                f"{folder} still lacks {len(missing)} of {own.num_images} images (the other "
                "ranks' share); rerun rank 0 when they have finished, or raise --wait-timeout. "
                "Finished images are kept.")
        remove_stale_temporaries(folder)
        npz = _pack(folder, own)
        row = {"plan": name, "num_images": own.num_images, "folder": str(folder),
               "npz": str(npz),
               "flops_ratio": cost.flops(plan, levers=levers) / full_flops}
        row.update(_timing(reports[slug]))
        if metric is not None:
            row.update(metric.evaluate(folder, own.labels()))
        rows.append(row)
    results = {"settings": {**(settings or {}), "spec": spec.to_dict(), "model": model},
               "rows": rows}
    (out_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2, default=_json) + "\n")
    return rows


def _pack(folder: Path, spec: SamplingSpec) -> Path:
    npz = folder.with_suffix(".npz")
    if npz.is_file():
        try:
            n, _, _ = check_image_batch(npz)
            if n == spec.num_images and npz.stat().st_mtime >= _newest_png(folder):
                return npz
        except (ValueError, OSError):
            pass
    return create_npz_from_sample_folder(folder, spec.num_images, npz, labels=spec.labels())


def _newest_png(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.glob("*.png")), default=0.0)


def _timing(report) -> dict:
    if not report.generated:
        return {"generated": 0, "seconds_per_image": None}
    return {"generated": report.generated,
            "seconds_per_image": report.seconds / report.generated,
            "transformer_seconds": report.timings.get("transformer"),
            "decoder_seconds": report.timings.get("decoder")}


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """Markdown: plan, images, transformer FLOPs relative to the full plan, FID, IS, precision,
    recall, class accuracy, sampling seconds per image (this run's sampled images; — if none)."""
    header = ("| plan | images | rel. FLOPs | FID | IS | precision | recall | class-acc | s/img |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [header]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r.get('num_images', '—')} | {r['flops_ratio']:.2f}× "
            f"| {_fmt(r.get('fid'), '.2f')} | {_fmt(r.get('inception_score'), '.2f')} "
            f"| {_fmt(r.get('precision'), '.3f')} | {_fmt(r.get('recall'), '.3f')} "
            f"| {_fmt(r.get('class_accuracy'), '.3f')} "
            f"| {_fmt(r.get('seconds_per_image'), '.3f')} |")
    return "\n".join(lines)
