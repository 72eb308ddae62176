"""Sampling benchmark of depth plans: time, memory, KV cache, FLOPs, and a latency profile.

    settings = BenchSettings(batch=8, sampling=SamplingConfig(dtype="bf16"), repeats=3)
    row = measure_plan(var, vae, plan, settings)          # one plan, this process
    rows = compare_to_full(rows)                           # speed-up and memory saving columns
    print(format_table(rows, settings, device))

Peak memory is `torch.cuda.max_memory_allocated` on CUDA (reset before the plan's first run). On
CPU it is the peak resident set size of the process, so it only means something when the process
ran nothing else: `variant bench` runs each plan in a fresh subprocess for that. A profile
(`profile_scales`) times every scale of the full plan with the sampler's per-scale trace;
`variant plan --max-latency` predicts any plan's latency from it (`efficiency.budget`). FLOPs
and the KV prediction come from `models.cost.CostModel`; a row's `flops` covers one sampling
call (all rows).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..models.cost import CostModel
from ..sampling.levers import Levers
from ..sampling.plan import DepthPlan
from ..sampling.sampler import generate
from ..sampling.settings import SamplingConfig
from ..units import fmt_bytes

log = logging.getLogger(__name__)

PROFILE_FORMAT = "variant-latency-profile"


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    batch: int = 8  # images per sampling call
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(seed=0))
    warmup: int = 1
    repeats: int = 3

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"a benchmark needs a batch of at least 1 image, got {self.batch}.")
        if self.warmup < 0 or self.repeats < 1:
            raise ValueError(f"a benchmark needs warm-up runs >= 0 and timed runs >= 1, got "
                             f"{self.warmup} and {self.repeats}.")

    @property
    def dtype(self) -> str:
        return self.sampling.dtype

    @property
    def rows(self) -> int:
        """Rows in each transformer pass: the batch, doubled by classifier-free guidance."""
        return self.sampling.rows(self.batch)

    def to_dict(self) -> dict:
        """Flat, as profiles and bench JSON record it."""
        return {"batch": self.batch, "warmup": self.warmup, "repeats": self.repeats,
                **self.sampling.to_dict()}


def spread(values: list[float]) -> dict:
    """Median, quartiles (inclusive method) and range of a list of timings."""
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values),
            "max": max(values), "n": len(values)}


def peak_rss_bytes() -> int:
    """High-water resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def _sample(var, vae, plan: DepthPlan, s: BenchSettings, trace=None):
    labels = (torch.arange(s.batch) * 7 + 1) % var.num_classes
    return generate(var, s.batch, labels, settings=s.sampling, plan=plan, trace=trace)


def measure_plan(var, vae, plan: DepthPlan, settings: BenchSettings, *,
                 fresh_process: bool = False, name: str | None = None) -> dict:
    """Warm-up and timed sampling runs of one plan in this process.

    `fresh_process`: this process ran nothing but loading the model, so its peak RSS is this
    plan's peak memory on CPU (otherwise CPU memory is left out). `name`: the row's name (a
    configuration's spec when `settings.sampling` carries levers; default the plan's).
    """
    device = var.device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_loaded = current_rss_bytes()
    runs, kv_peak = [], 0
    for i in range(settings.warmup + settings.repeats):
        start = time.perf_counter()
        result = _sample(var, vae, plan, settings)
        total = time.perf_counter() - start  # generate synchronises CUDA for its timings
        kv_peak = result.kv_peak_bytes
        if i >= settings.warmup:
            runs.append({"transformer": result.timings["transformer"],
                         "decoder": result.timings["decoder"], "total": total})
    if cuda:
        memory, kind = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    elif fresh_process:
        memory, kind = peak_rss_bytes(), "peak RSS (fresh process)"
    else:
        memory, kind = None, "not measured (CPU, shared process)"
    row = {"plan": name or plan.name, "layer_sets": [list(s) for s in plan.layer_sets],
           "bridge": plan.bridge, "runs": runs, "kv_peak_bytes": int(kv_peak),
           "peak_memory_bytes": memory, "memory_kind": kind,
           "rss_after_load_bytes": None if cuda else rss_loaded}
    for key in ("transformer", "decoder", "total"):
        row[key] = spread([r[key] for r in runs])
    row["images_per_s"] = settings.batch / row["total"]["median"]
    return row


def add_accounting(row: dict, plan: DepthPlan, var_config, settings: BenchSettings,
                   levers: Levers | None = None) -> dict:
    """FLOPs (one sampling call, head included) and the KV prediction next to the measurements;
    `levers`: the configuration's (sampling.configuration), None for a plain plan."""
    cost = CostModel(var_config, settings.dtype, settings.rows)
    flops = cost.flops(plan, include_head=True, levers=levers)
    row.update({"gflops_per_image": flops / settings.batch / 1e9, "flops": flops,
                "transformer_flops": cost.flops(plan, levers=levers),
                "token_layers": cost.token_layers(plan, levers),
                "kv_predicted_bytes": cost.kv_peak_bytes(plan, levers)})
    return row


def compare_to_full(rows: list[dict]) -> list[dict]:
    """Speed-up and savings of every row against the full plan's row (if one was measured)."""
    full = next((r for r in rows if r["plan"] == "full"), None)
    for r in rows:
        r["speedup"] = r["speedup_transformer"] = r["flop_speedup"] = None
        r["memory_saving"] = r["kv_saving"] = None
        if full is None:
            continue
        r["speedup"] = full["total"]["median"] / r["total"]["median"]
        r["speedup_transformer"] = full["transformer"]["median"] / r["transformer"]["median"]
        r["flop_speedup"] = full["flops"] / r["flops"]
        if full["kv_peak_bytes"]:
            r["kv_saving"] = 1 - r["kv_peak_bytes"] / full["kv_peak_bytes"]
        if full["peak_memory_bytes"] and r["peak_memory_bytes"] is not None:
            r["memory_saving"] = 1 - r["peak_memory_bytes"] / full["peak_memory_bytes"]
    return rows


# ---------------------------------------------------------------------------------- profile
class ScaleTimer:
    """Per-scale timers, driven by the sampler's scale loop (`generate(..., trace=timer)`).

    `layers_s[k]`: seconds of scale k's layers; `scale_s[k]`: the whole scale, from the start of
    its layers to the next scale's (the last one: to the decoder's start), so it includes the
    head, guidance, top-k/top-p and the tokenizer's next input. Works for any `ScaleModel`.
    """

    def __init__(self, model, plan=None):
        plan = plan or DepthPlan.full(model.depth, model.num_scales)
        self.cuda = model.device.type == "cuda"
        K = model.num_scales
        self.layers = [len(plan.layers_at(k)) for k in range(K)]
        self.layers_s, self.scale_s = [0.0] * K, [0.0] * K
        self._scale, self._start = None, 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def __call__(self, event: str, scale_index: int) -> None:
        now = self._now()
        if event == "layers":
            self.layers_s[scale_index] += now - self._start
            return
        if self._scale is not None:  # a new scale or the decoder closes the current scale
            self.scale_s[self._scale] += now - self._start
        self._scale = scale_index if event == "scale" else None
        self._start = now


def profile_scales(var, vae, settings: BenchSettings, repeats: int = 1) -> dict:
    """Per-scale layer and overhead seconds of the full plan, plus decoder seconds.

    The latency model built on it (`efficiency.budget`): a plan costs, per scale, its layers x
    the measured seconds per layer at that scale, plus the scale's non-layer time (head,
    sampling), plus the decoder.
    """
    plan = var.full_plan()
    _sample(var, vae, plan, settings)  # warm-up
    timer = ScaleTimer(var, plan)
    decoder = [_sample(var, vae, plan, settings, trace=timer).timings["decoder"]
               for _ in range(repeats)]
    depth = var.depth
    scales = []
    for k, p in enumerate(var.patch_nums):
        layers = timer.layers_s[k] / repeats
        scales.append({"scale": k + 1, "side": p, "tokens": p * p,
                       "seconds_per_layer": layers / depth,
                       "overhead_seconds": max(0.0, timer.scale_s[k] / repeats - layers)})
    token_layers = plan.token_layers(var.patch_nums)
    return {
        "format": PROFILE_FORMAT, "version": 1,
        "model": {"depth": depth, "width": var.C, "patch_nums": list(var.patch_nums), "V": var.V},
        "device": str(var.device), "device_name": device_name(var.device),
        "threads": torch.get_num_threads(), "settings": settings.to_dict(),
        "rows": settings.rows, "scales": scales,
        "seconds_per_token_layer": sum(timer.layers_s) / repeats / token_layers,
        "decoder_seconds": statistics.median(decoder),
    }


def child_env() -> dict[str, str]:
    """This environment, with this package first on PYTHONPATH: `python -m variant ...` child
    processes (isolated benchmark runs) import the same code as their parent."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU model (Linux: /proc/cpuinfo), else its architecture."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_json(path: str | Path, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------- output
def _time_cell(stat: dict) -> str:
    if stat["n"] == 1:
        return f"{stat['median']:.3f}"
    return f"{stat['median']:.3f} ({stat['q1']:.3f}–{stat['q3']:.3f})"


def _ratio(x: float | None, pattern: str) -> str:
    return "—" if x is None else pattern.format(x)


def describe_settings(settings: BenchSettings, device: str, extra: str = "") -> str:
    cfg = settings.sampling.cfg
    guidance = (f"cfg {cfg}: CFG doubles the batch to {settings.rows} rows"
                if cfg else "no CFG: batch not doubled")
    return (f"batch {settings.batch} images ({guidance}), {settings.dtype}, {device}; "
            f"{settings.warmup} warm-up + {settings.repeats} timed runs per plan; seconds: "
            f"median (interquartile range){extra}")


def format_table(rows: list[dict], settings: BenchSettings, device: str,
                 extra: str = "") -> str:
    lines = [describe_settings(settings, device, extra), "",
             "| plan | transformer s | decoder s | total s | images/s | peak memory | peak KV "
             "| GFLOPs/img | speed-up (transformer) | FLOP bound | memory saving | KV saving |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {_time_cell(r['transformer'])} | {_time_cell(r['decoder'])} "
            f"| {_time_cell(r['total'])} | {r['images_per_s']:.2f} "
            f"| {fmt_bytes(r['peak_memory_bytes'])} | {fmt_bytes(r['kv_peak_bytes'])} "
            f"| {r['gflops_per_image']:.2f} "
            f"| {_ratio(r['speedup'], '{:.2f}×')} ({_ratio(r['speedup_transformer'], '{:.2f}×')}) "
            f"| {_ratio(r['flop_speedup'], '{:.2f}×')} "
            f"| {_ratio(r['memory_saving'], '{:.0%}')} | {_ratio(r['kv_saving'], '{:.0%}')} |")
    kinds = sorted({r["memory_kind"] for r in rows})
    lines += ["", f"peak memory: {', '.join(kinds)}; peak KV: the lean cache's own count "
                  "(buffers + attended parts)"]
    return "\n".join(lines)


def plot_bench(rows: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Stacked transformer/decoder time and peak memory per plan; None without matplotlib."""
    try:  # matplotlib is optional (the 'plot' extra): imported only when a chart is asked for
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed (pip install 'variant[plot]'); skipping %s", path)
        return None
    names = [r["plan"] for r in rows]
    x = range(len(rows))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    trans = [r["transformer"]["median"] for r in rows]
    dec = [r["decoder"]["median"] for r in rows]
    ax_t.bar(x, trans, label="transformer")
    ax_t.bar(x, dec, bottom=trans, label="decoder")
    ax_t.set_ylabel("seconds per batch (median)")
    ax_t.legend()
    mib = 2 ** 20
    mem = [(r["peak_memory_bytes"] or 0) / mib for r in rows]
    kv = [r["kv_peak_bytes"] / mib for r in rows]
    ax_m.bar([i - 0.2 for i in x], mem, width=0.4, label="peak memory")
    ax_m.bar([i + 0.2 for i in x], kv, width=0.4, label="peak KV cache")
    ax_m.set_ylabel("MiB")
    if max(kv) and max(mem) > 100 * max(kv):
        ax_m.set_yscale("log")  # a tiny model's KV cache next to the runtime's RSS
    ax_m.legend()
    for ax in (ax_t, ax_m):
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
