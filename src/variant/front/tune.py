"""`variant tune`: measured quality/cost fronts over configurations (plans and inference levers).

    tuner = Tuner(var, vae, configs, "runs/tune", TuneSettings(...), metric, model="builtin")
    front = tuner.run()             # resumable: finished parts are read back, not redone
    write_front_plot(front, "runs/tune/front.png")   # front/plot.py

For every configuration (a plan spec with levers, sampling/configuration.py):
- quality: `num_per_class` images of each class per seed, sampled into
  `{out}/configs/{slug}/seed{s}/` (resumable image by image, eval.sample_folder) and scored by the
  metric (the built-in one for the built-in data, FID/IS against a reference otherwise); every
  metric is reported as the mean over seeds with a 95% Student-t interval over seeds (each seed
  is an independent set of images; the interval is mean +- t(0.975, n-1) * sd / sqrt(n));
- cost: one `variant bench` run in its own process (so on CPU its peak RSS is the
  configuration's alone), configurations one after another: warm-up, median transformer,
  decoder and total seconds of `repeats` runs, the device and thread count recorded, peak KV
  bytes (measured, equal to the prediction), peak memory and FLOPs.

`front.json` lists every configuration with its spec, family, quality (with interval), costs and
whether it is on the front of quality against latency, KV bytes and peak memory (no other
configuration is at most as costly with a better mean, one of the two strictly). Reading, checking
and choosing from it: variant.front (`variant plan --front`, `variant studio --front`); its
figure: front/plot.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..analysis.stats import METRIC_RANGES, interval
from ..atomic import write_text_atomic
from ..efficiency.bench import child_env, device_name
from ..eval.sample_folder import SamplingSpec, sample_to_folder
from ..jsonfile import read_json
from ..precision import WeightCopies
from ..sampling.configuration import Configuration, folder_name, parse_configuration
from ..sampling.lever import LEVERS
from ..sampling.plan import default_bridge
from ..sampling.settings import SamplingConfig
from ..weights import weights_sha256
from . import COST_AXES, FRONT_FORMAT

log = logging.getLogger(__name__)

# a damaged part file of an earlier run: removing it makes the rerun measure that part again
PART_HINT = "delete it and rerun `variant tune` with the same --out to measure it again"

def families() -> tuple[str, ...]:
    """Every family name a front may show: depth plans, each declared lever's, combinations."""
    return ("depth", *(f for lever in LEVERS.values() for f in lever.families), "combination")


def default_grid(depth: int, num_scales: int, subnets: Sequence[int]) -> list[str]:
    """Depth plans, each lever alone on the full network, and the promising combinations: what
    each lever declares (`Lever.grid`): its parts on the full network, on every subnet (alone,
    then all such parts joined) and on the deepest subnet."""
    subs = sorted({int(d) for d in subnets if 1 < d < depth}, reverse=True)
    if not subs:
        raise ValueError(f"the grid needs at least one subnet depth in 2..{depth - 1}; give "
                         "--subnets (e.g. --subnets 4 2).")
    parts = [lever.grid(num_scales, subs) for lever in LEVERS.values()]
    grid = ["full"] + [f"d{d}" for d in subs]
    grid += [f"full+{part}" for p in parts for part in p.get("full", [])]
    per_subnet = [part for p in parts for part in p.get("subnets", [])]
    for d in subs:
        grid += [f"d{d}+{part}" for part in per_subnet]
        if len(per_subnet) > 1:
            grid.append("+".join([f"d{d}", *per_subnet]))
    grid += [f"d{subs[0]}+{part}" for p in parts for part in p.get("deepest", [])]
    return grid


def family(spec: str) -> str:
    """The lever family of a configuration spec, for colours and for the discussion."""
    plan_spec, levers = parse_configuration(spec)
    kinds = {f for name in levers if (f := LEVERS[name].family(levers)) is not None}
    if not kinds:
        return "depth"
    if len(kinds) > 1 or plan_spec.lower() != "full":
        return "combination"
    return kinds.pop()


def mark_fronts(rows: list[dict], key: str = "fid", lower_is_better: bool = True) -> None:
    """Set `on_front[axis]` of every row: not dominated in (cost, mean quality)."""
    sign = 1 if lower_is_better else -1
    for axis, cost_key in COST_AXES.items():
        points = [(r["cost"].get(cost_key), r["quality"][key]["mean"]) for r in rows]
        for r, (c, q) in zip(rows, points):
            if c is None or q is None:
                r.setdefault("on_front", {})[axis] = None
                continue
            dominated = any(
                c2 is not None and q2 is not None and c2 <= c and sign * q2 <= sign * q
                and (c2 < c or sign * q2 < sign * q) for c2, q2 in points)
            r.setdefault("on_front", {})[axis] = not dominated


@dataclass(frozen=True, kw_only=True)
class TuneSettings:
    seeds: tuple[int, ...] = (0, 1, 2)
    num_per_class: int = 20
    num_classes: int = 10
    batch_size: int = 50  # images per sampling call (part of what fixes each image)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    bench_batch: int = 8  # images per timed sampling call
    warmup: int = 1
    repeats: int = 3
    threads: int | None = None
    metric_key: str = "fid"

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"give one or more distinct --seeds, got {list(self.seeds)}.")
        if min(self.num_per_class, self.num_classes, self.batch_size, self.bench_batch,
               self.repeats) < 1 or self.warmup < 0:
            raise ValueError("--num-per-class, --num-classes, --batch-size, --bench-batch and "
                             "--repeats must be >= 1 and --warmup >= 0.")
        if self.sampling.seed is not None:
            raise ValueError("the sampling seed comes from --seeds; leave settings.seed None.")
        if self.num_per_class * self.num_classes < 4:
            raise ValueError(f"each seed needs at least 4 images (precision/recall use 3 "
                             f"neighbours), got {self.num_per_class} per class x "
                             f"{self.num_classes} classes; raise --num-per-class.")

    def fixed(self) -> dict:
        """What fixes every measured part (a resumed run must match it; seeds may be added)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("seeds", "sampling")}
        return {**out, "sampling": self.sampling.to_dict()}


class Tuner:
    """Runs the grid; every finished part is a file under `out`, so a rerun resumes."""

    def __init__(self, var, vae, configs: Sequence[Configuration], out: str | Path,
                 settings: TuneSettings, metric, *, model: str, model_args: Sequence[str] = (),
                 device: str = "cpu", bridge: int | None = None, progress: bool = True):
        self.var, self.vae, self.configs = var, vae, list(configs)
        self.models = WeightCopies(var)  # a quantised copy per weight precision named
        self.out, self.settings, self.metric = Path(out), settings, metric
        self.model, self.model_args, self.device = model, list(model_args), device
        self.bridge = bridge  # of bare 'dN' specs; the timed child resolves them the same way
        self.progress = progress

    def run(self) -> dict:
        self._check_resume()
        rows = []
        start = time.perf_counter()
        for i, config in enumerate(self.configs):
            log.info("[%d/%d] %s", i + 1, len(self.configs), config.name)
            folder = self.out / "configs" / folder_name(config.name)
            folder.mkdir(parents=True, exist_ok=True)
            quality = self._quality(config, folder)
            cost = self._cost(config, folder)
            rows.append({"spec": config.name, "family": family(config.name),
                         "plan": config.plan.name, "quality": quality, "cost": cost})
        mark_fronts(rows, self.settings.metric_key)
        front = {"format": FRONT_FORMAT, "version": 1, "meta": self._meta(), "rows": rows,
                 "seconds": time.perf_counter() - start}
        write_text_atomic(self.out / "front.json", json.dumps(front, indent=2) + "\n")
        return front

    def measure_quality(self) -> dict[str, dict]:
        """Every configuration's quality alone, no cost (the plan search's cheap stage,
        front/search.py), by name: the same resumable parts as `run`."""
        self._check_resume()
        out = {}
        for i, config in enumerate(self.configs):
            log.info("[%d/%d] %s (quality)", i + 1, len(self.configs), config.name)
            folder = self.out / "configs" / folder_name(config.name)
            folder.mkdir(parents=True, exist_ok=True)
            out[config.name] = self._quality(config, folder)
        return out

    def _check_resume(self) -> None:
        """Parts of an earlier run are reused only if made with the same settings."""
        s = self.settings
        fixed = {**s.fixed(), "threads": self.threads, "bridge": self.bridge, "model": self.model,
                 "model_args": self.model_args, "device": self.device,
                 "metric": self.metric.name, "reference": self.metric.reference.source}
        path = self.out / "tune.json"
        if path.is_file():
            old = read_json(path, "tune settings", hint=PART_HINT)
            diff = sorted(k for k in set(old) | set(fixed) if old.get(k) != fixed.get(k))
            if diff:
                details = "; ".join(f"{k}: {old.get(k)!r} there, {fixed.get(k)!r} now"
                                    for k in diff)
                raise ValueError(f"{self.out} holds a tune run with other settings ({details}); "
                                 "pass another --out, or delete that folder to start again.")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(fixed, indent=2) + "\n")

    @property
    def threads(self) -> int:
        """The thread count of the timed runs (passed to every `variant bench`)."""
        return self.settings.threads or torch.get_num_threads()

    # ------------------------------------------------------------------ quality
    def _quality(self, config: Configuration, folder: Path) -> dict:
        s = self.settings
        per_seed = []
        for seed in s.seeds:
            done = folder / f"quality_seed{seed}.json"
            if done.is_file():
                per_seed.append(read_json(done, "quality part", hint=PART_HINT))
                continue
            spec = SamplingSpec(num_per_class=s.num_per_class, num_classes=s.num_classes,
                                batch_size=s.batch_size, seed=seed,
                                settings=config.settings.replace(seed=None))
            images = folder / f"seed{seed}"
            sample_to_folder(self.models(config.levers.get("weights")), self.vae, config.plan,
                             images, spec, model=self.model, progress=self.progress)
            row = self.metric.evaluate(images, spec.labels())
            write_text_atomic(done, json.dumps(row, indent=2) + "\n")
            per_seed.append(row)
        keys = [k for k, v in per_seed[0].items() if isinstance(v, (int, float))
                and not isinstance(v, bool) and k not in ("num_images", "image_size")]
        quality = {k: interval([r.get(k) for r in per_seed], METRIC_RANGES.get(k, (None, None)))
                   for k in keys}
        quality["num_images_per_seed"] = per_seed[0]["num_images"]
        return quality

    # ------------------------------------------------------------------ cost
    def _cost(self, config: Configuration, folder: Path) -> dict:
        done = folder / "cost.json"
        if done.is_file():
            return read_json(done, "cost part", hint=PART_HINT)
        s = self.settings
        raw = folder / "bench.json"
        cmd = [sys.executable, "-m", "variant", "bench", "--model", self.model,
               *self.model_args, "--device", self.device, "--plans", config.name,
               "--batch", str(s.bench_batch), "--warmup", str(s.warmup),
               "--repeats", str(s.repeats), "--json", str(raw),
               *s.sampling.replace(seed=None).cli_args()]
        cmd += ["--threads", str(self.threads)]
        if self.bridge is not None:
            cmd += ["--bridge", str(self.bridge)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
        if proc.returncode != 0 or not raw.is_file():
            raise ValueError(f"timing {config.name} failed (exit code {proc.returncode}): "
                             f"{proc.stderr.strip().splitlines()[-1:] or ['no output']}; the "
                             f"command was: {' '.join(cmd)}")
        data = read_json(raw, "bench result")
        (row,) = data["rows"]
        cost = {"transformer_s": row["transformer"]["median"],
                "decoder_s": row["decoder"]["median"], "total_s": row["total"]["median"],
                "total_q1_s": row["total"]["q1"], "total_q3_s": row["total"]["q3"],
                "kv_peak_bytes": row["kv_peak_bytes"], "kv_predicted_bytes":
                row["kv_predicted_bytes"], "peak_memory_bytes": row["peak_memory_bytes"],
                "memory_kind": row["memory_kind"], "flops": row["flops"],
                "gflops_per_image": row["gflops_per_image"], "batch": s.bench_batch,
                "device": data["meta"]["device"], "threads": data["meta"]["threads"]}
        write_text_atomic(done, json.dumps(cost, indent=2) + "\n")
        return cost

    def _meta(self) -> dict:
        s = self.settings
        device = torch.device(self.device)
        return {"model": self.model, "device": self.device, "device_name": device_name(device),
                "threads": self.threads, "dtype": s.sampling.dtype,
                "bench_batch": s.bench_batch, "repeats": s.repeats, "seeds": list(s.seeds),
                "num_per_class": s.num_per_class, "num_classes": s.num_classes,
                "metric": self.metric.name, "reference": self.metric.reference.source,
                "metric_key": s.metric_key,
                "interval": "95% Student-t over seeds (each seed: its own set of images)",
                "settings": s.sampling.to_dict(), "depth": self.var.depth,
                "num_scales": self.var.num_scales, "width": self.var.config.width,
                "patch_nums": list(self.var.patch_nums),
                "default_bridge": default_bridge(self.var.num_scales),
                "weights_sha256": weights_sha256(self.var, self.vae),
                "date": time.strftime("%Y-%m-%d %H:%M")}
