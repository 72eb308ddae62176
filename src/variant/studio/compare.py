"""The studio's engine: run up to four configurations from the same seed and measure each.

    studio = Studio(var, vae, ModelInfo(source="builtin"))
    comparison = studio.compare(Request(classes=(0, 2), num_images=4,
                                        configurations=("full", "d2")))
    comparison.outcomes[1].grid_HW3, comparison.outcomes[1].speedup

Every configuration samples the same labels with the same settings and seed, exactly as
`variant sample` does for one batch, so each grid is the PNG that its command line writes.
Timings are wall-clock seconds of `generate` (transformer and decoder from its own timers); with
several timed runs the configurations take turns and each reports its median.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..cli.sample import make_grid, to_uint8
from ..efficiency.bench import BenchSettings, current_rss_bytes, profile_scales
from ..efficiency.budget import (
    Predictor,
    Workload,
    candidate_plans,
    check_profile,
    choose_plan,
    model_bytes,
)
from ..front import (
    check_front_device,
    check_front_model,
    check_front_settings,
    choose_from_front,
    row_cost,
)
from ..models.cost import CostModel
from ..sampling.configuration import Configuration
from ..sampling.levers import Levers
from ..sampling.plan import DepthPlan, default_subnet_depths, resolve_bridge
from ..sampling.sampler import generate
from ..sampling.settings import SamplingConfig
from ..units import fmt_bytes
from .classes import class_names, labels_for, resolve_classes
from .entries import Entry, budget_label, format_seconds, parse_entry

log = logging.getLogger(__name__)

MAX_CONFIGURATIONS = 4
MAX_REPEATS = 5
DEFAULT_IMAGES = 4
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelInfo:
    """Where the model came from (for command lines) and what its directory says about it."""

    source: str = "builtin"
    vae: str | None = None
    revision: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Request:
    """One Generate click. `classes`: ids or names (none: random classes from the seed)."""

    classes: tuple = ()
    num_images: int = 4
    seed: int = 0
    cfg: float = SamplingConfig.cfg
    top_k: int = SamplingConfig.top_k
    top_p: float = SamplingConfig.top_p
    dtype: str = SamplingConfig.dtype
    configurations: tuple[str, ...] = ("full",)
    repeats: int = 1  # timed runs per configuration

    def settings(self) -> SamplingConfig:
        return SamplingConfig(cfg=float(self.cfg), top_k=int(self.top_k), top_p=float(self.top_p),
                              dtype=self.dtype, seed=int(self.seed))


@dataclass
class Outcome:
    """One configuration of a comparison: its grid and what it cost."""

    entry: Entry
    plan: DepthPlan
    how: str  # "plan", or how the budget was resolved
    grid_HW3: np.ndarray
    kv_peak_bytes: int  # measured by the lean cache
    flops: int  # one batch, all rows, head included (CostModel)
    runs: list[dict]  # {"transformer", "decoder", "total"} seconds per timed run
    name: str = ""  # the configuration's spec (plan and levers); default the plan's name
    levers: Levers | None = None
    speedup: float | None = None  # vs the full network's total time, when it ran too
    speedup_transformer: float | None = None
    kv_saving: float | None = None  # 1 - KV / the full network's KV
    flop_ratio: float | None = None  # full FLOPs / these FLOPs

    def __post_init__(self) -> None:
        self.name = self.name or self.plan.name

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    @property
    def is_full(self) -> bool:
        neutral = self.levers is None or self.levers.is_neutral
        return neutral and self.plan.is_full(self.plan.depth)


@dataclass
class Comparison:
    request: Request
    labels: list[int]
    settings: SamplingConfig
    outcomes: list[Outcome]
    full_kv_bytes: int  # the full network's lean-cache peak (measured when it ran)
    measured_full: bool  # whether the full network ran (speed-ups need it)
    device: str
    seconds: float  # the whole request


class Studio:
    """A loaded model and the limits the page enforces; `compare` serves one request at a time."""

    def __init__(self, var, vae, info: ModelInfo | None = None, *, max_images: int = 16,
                 max_memory: int | None = None, profile: dict | None = None,
                 front: dict | None = None, allow_other_device: bool = False):
        self.var, self.vae, self.info = var, vae, info or ModelInfo()
        self.class_names = class_names(var.num_classes, self.info.meta)
        self.max_images, self.max_memory = int(max_images), max_memory
        self.profile = profile  # a `variant bench --profile` file, used when it matches
        # a `variant tune` front: budgets then pick its best measured configuration
        self.front, self.allow_other_device = front, allow_other_device
        if front is not None:
            check_front_model(front, var)
        self._profiles: dict[tuple, dict] = {}  # measured here, per workload
        self._lock = threading.Lock()
        self.weight_bytes = model_bytes(var.config, vae.config)

    @property
    def device(self) -> torch.device:
        return self.var.device

    def describe(self) -> str:
        c = self.var.config
        text = (f"{self.info.source}: depth {c.depth}, width {c.width}, {c.num_classes} classes, "
                f"{c.num_scales} scales, {self.vae.config.image_size} px, on {self.device}")
        if self.front is not None:
            text += (f"; budgets pick from a measured front of {len(self.front['rows'])} "
                     "configurations")
        return text

    def default_request(self, **changes) -> Request:
        return Request(num_images=min(DEFAULT_IMAGES, self.max_images), **changes)

    def warm_up(self) -> None:
        """Measure the latency profile of the default request (a warm-up and a timed run of the
        full network): the first request then times no one-off setup, and a latency budget at
        the default settings needs no extra measurement."""
        request = self.default_request()
        settings = request.settings()
        with self._lock:
            self._measure_profile(self._workload(settings, request.num_images), settings, None)

    def _workload(self, settings: SamplingConfig, num_images: int) -> Workload:
        return Workload(batch=num_images, dtype=settings.dtype, use_cfg=settings.use_cfg,
                        device=self.device.type)

    def suggestions(self) -> list[str]:
        """Entries offered in the configuration pickers: this model's plans, then budgets
        halfway between the full network and the cheapest plan at the default settings."""
        meta = self.info.meta
        depths = meta.get("subnet_depths") or default_subnet_depths(self.var.depth)
        bridge = resolve_bridge(meta.get("bridge"), self.var.num_scales)  # the trained one
        plans = ["full", *[DepthPlan.paper(self.var.depth, d, bridge, self.var.num_scales).name
                           for d in sorted(depths, reverse=True)]]
        request = self.default_request()
        settings = request.settings()
        workload = self._workload(settings, request.num_images)
        predictor = Predictor(self.var.config, self.vae.config, workload,
                              self._latency_profile(workload, settings, None, measure=False))
        candidates = candidate_plans(self.var.depth, self.var.num_scales, meta.get("bridge"),
                                     meta.get("subnet_depths"))
        deep, cheap = predictor.predict(candidates[0]), predictor.predict(candidates[-1])
        budgets = [f"KV under {fmt_bytes((deep.kv_bytes + cheap.kv_bytes) / 2)}"]
        if deep.latency_s is not None:
            budgets.insert(0, "best under "
                              f"{format_seconds((deep.latency_s + cheap.latency_s) / 2)}")
        return plans + budgets

    # ---------------------------------------------------------------------------------- checks
    def resolve(self, request: Request) -> tuple[list[int], SamplingConfig, list[Entry]]:
        """Labels, settings and entries of a request; ValueError naming the problem and fix."""
        n = request.num_images
        if not isinstance(n, int) or not 1 <= n <= self.max_images:
            raise ValueError(f"number of images must be 1..{self.max_images}, got {n!r} (the "
                             "studio's --max-images sets the limit).")
        if not 1 <= request.repeats <= MAX_REPEATS:
            raise ValueError(f"timed runs must be 1..{MAX_REPEATS}, got {request.repeats}.")
        settings = request.settings()
        texts = [t for t in (str(c).strip() for c in request.configurations) if t]
        if not texts:
            raise ValueError("choose at least one configuration, e.g. 'full' and 'd2'.")
        if len(texts) > MAX_CONFIGURATIONS:
            raise ValueError(f"compare at most {MAX_CONFIGURATIONS} configurations, got "
                             f"{len(texts)}.")
        entries = [parse_entry(t, self.var.depth, self.var.num_scales) for t in texts]
        classes = resolve_classes(request.classes, self.class_names)
        labels = labels_for(classes, n, self.var.num_classes, int(request.seed))
        return labels, settings, entries

    def predictor(self, settings: SamplingConfig, num_images: int,
                  with_latency: bool = False, progress: Progress | None = None) -> Predictor:
        workload = self._workload(settings, num_images)
        runtime = 0 if self.device.type == "cuda" else max(
            0, current_rss_bytes() - self.weight_bytes)  # the weights are counted apart
        profile = self._latency_profile(workload, settings, progress) if with_latency else None
        return Predictor(self.var.config, self.vae.config, workload, profile, runtime)

    def _latency_profile(self, workload: Workload, settings: SamplingConfig,
                         progress: Progress | None, measure: bool = True) -> dict | None:
        """The given profile when it fits this workload, else one measured here (cached; None
        when none is cached and `measure` is False)."""
        if self.profile is not None:
            try:
                check_profile(self.profile, self.var.config, workload)
                return self.profile
            except ValueError as err:
                log.info("the given latency profile does not fit this request (%s)", err)
        key = (workload.batch, settings.replace(seed=None))
        if key not in self._profiles and measure:
            self._measure_profile(workload, settings, progress)
        return self._profiles.get(key)

    def _measure_profile(self, workload: Workload, settings: SamplingConfig,
                         progress: Progress | None) -> None:
        if progress:
            progress(0.0, "measuring this machine's latency profile for the budget")
        bench = BenchSettings(batch=workload.batch, sampling=settings.replace(seed=0),
                              warmup=1, repeats=1)
        profile = profile_scales(self.var, self.vae, bench)
        self._profiles[(workload.batch, settings.replace(seed=None))] = profile

    def plan_of(self, entry: Entry, predictor: Predictor) -> tuple[DepthPlan | str, str]:
        """An entry's plan (a configuration spec when a front chose it), and how it was chosen
        (for budgets: the planner's prediction, or the front's measurements)."""
        if not entry.is_budget:
            return entry.plan, "plan"
        if self.front is not None:
            return self.from_front(entry, predictor.workload.batch)
        meta = self.info.meta
        candidates = candidate_plans(self.var.depth, self.var.num_scales, meta.get("bridge"),
                                     meta.get("subnet_depths"))
        try:
            chosen, _ = choose_plan(predictor, entry.budget, candidates)
        except ValueError as err:
            raise ValueError(f"budget {entry.text!r}: {err}") from None
        predicted = [f"KV {fmt_bytes(chosen.kv_bytes)}", f"memory {fmt_bytes(chosen.memory_bytes)}"]
        if chosen.latency_s is not None:
            predicted.insert(0, f"latency {format_seconds(chosen.latency_s)}")
        return chosen.plan, (f"{budget_label(entry.budget)} → {chosen.plan.name} (predicted "
                             f"{', '.join(predicted)})")

    def from_front(self, entry: Entry, num_images: int) -> tuple[str, str]:
        """A budget entry's best measured configuration on the front (its spec) and how it was
        chosen; ValueError when a latency budget meets latencies measured elsewhere, or when
        nothing fits. (`compare` checks first that the request's settings are the front's.)"""
        front, budget = self.front, entry.budget
        if budget.max_latency is not None:
            try:
                check_front_device(front, str(self.device), torch.get_num_threads(),
                                   self.allow_other_device)
            except ValueError as err:
                raise ValueError(f"budget {entry.text!r}: {err} A KV budget (e.g. KV under "
                                 "1 MiB) holds on any device.") from None
        try:
            choice = choose_from_front(front, max_latency=budget.max_latency,
                                       max_kv=budget.max_kv, max_memory=budget.max_memory,
                                       batch=num_images)
        except ValueError as err:
            raise ValueError(f"budget {entry.text!r}: {err}") from None
        row, meta = choice.chosen, front["meta"]
        key = meta["metric_key"]
        q = row["quality"][key]
        band = "" if q["low"] is None else f" ({q['low']:.2f}–{q['high']:.2f})"
        seconds, kv = (row_cost(front, row, axis, num_images) for axis in ("latency", "kv"))
        costs = " and ".join(x for x in (
            None if seconds is None else format_seconds(seconds),
            None if kv is None else f"KV {fmt_bytes(round(kv))}") if x)
        return row["spec"], (
            f"{budget_label(budget)} → {row['spec']} (measured on the front: {key} "
            f"{q['mean']:.2f}{band} over {len(meta['seeds'])} seeds"
            + (f"; {costs} for {num_images} images, scaled from its batch of "
               f"{meta['bench_batch']}" if costs else "") + ")")

    def check_memory(self, predictor: Predictor, plans: Sequence[DepthPlan]) -> None:
        if self.max_memory is None:
            return
        worst = max((predictor.predict(p) for p in plans), key=lambda p: p.memory_bytes)
        if worst.memory_bytes > self.max_memory:
            raise ValueError(
                f"this request needs about {fmt_bytes(worst.memory_bytes)} ({worst.plan.name}: "
                f"weights, KV cache and activations for {predictor.workload.batch} images), "
                f"over the studio's memory budget of {fmt_bytes(self.max_memory)} "
                "(--max-memory); use fewer images, a cheaper configuration or bf16.")

    # ---------------------------------------------------------------------------------- run
    def compare(self, request: Request, progress: Progress | None = None) -> Comparison:
        """Sample every configuration of `request` from the same seed and measure it."""
        start = time.perf_counter()
        labels, settings, entries = self.resolve(request)
        with self._lock:  # one device, one request at a time
            if self.front is not None and any(e.is_budget for e in entries):
                check_front_settings(self.front, settings)
            predictor = self.predictor(settings, len(labels), self.front is None and any(
                e.is_budget and e.budget.max_latency is not None for e in entries), progress)
            chosen = [self.plan_of(e, predictor) for e in entries]
            configs = [self._configuration(e, plan, settings) for e, (plan, _) in
                       zip(entries, chosen)]
            self.check_memory(predictor, [c.plan for c in configs])
            runs = self._run(labels, configs, request.repeats, progress)
        cost = CostModel(self.var.config, settings.dtype, settings.rows(len(labels)))
        outcomes = [Outcome(entry, c.plan, how, grid, kv,
                            cost.flops(c.plan, include_head=True, levers=c.levers), timed,
                            c.name, c.levers)
                    for entry, (_, how), c, (grid, kv, timed) in zip(entries, chosen, configs,
                                                                     runs)]
        full = next((o for o in outcomes if o.is_full), None)
        full_kv = full.kv_peak_bytes if full else cost.kv_peak_bytes(self.var.full_plan())
        full_flops = cost.flops(self.var.full_plan(), include_head=True)
        for o in outcomes:
            o.kv_saving = 1 - o.kv_peak_bytes / full_kv if full_kv else None
            o.flop_ratio = full_flops / o.flops
            if full is not None:
                o.speedup = full.median("total") / o.median("total")
                o.speedup_transformer = full.median("transformer") / o.median("transformer")
        return Comparison(request, labels, settings, outcomes, full_kv, full is not None,
                          str(self.device), time.perf_counter() - start)

    def _configuration(self, entry: Entry, plan: DepthPlan | str,
                       settings: SamplingConfig) -> Configuration:
        """The entry's plan with its levers (if any) resolved against the request's settings;
        `plan` is a spec when a front chose it."""
        spec = plan if isinstance(plan, str) else entry.text if entry.has_levers else None
        if spec is None:
            return Configuration.of(self.var, plan, settings)
        return Configuration.resolve(spec, self.var.depth, self.var.patch_nums, settings)

    def _run(self, labels: list[int], configs: list[Configuration], repeats: int,
             progress: Progress | None):
        """(grid, measured KV peak, timed runs) per configuration; they take turns each round."""
        K = self.var.num_scales
        steps = repeats * len(configs) * (K + 1)
        grids, kv, runs = [None] * len(configs), [0] * len(configs), [[] for _ in configs]
        label_B = torch.tensor(labels)
        for r in range(repeats):
            for i, config in enumerate(configs):
                done = (r * len(configs) + i) * (K + 1)
                trace = _progress_trace(progress, done, steps, K, f"{config.name} ({i + 1}/"
                                        f"{len(configs)})" + (f", run {r + 1}/{repeats}"
                                                              if repeats > 1 else ""))
                t0 = time.perf_counter()
                res = generate(self.var, len(labels), label_B, settings=config.settings,
                               plan=config.plan, trace=trace)
                total = time.perf_counter() - t0
                runs[i].append({"transformer": res.timings["transformer"],
                                "decoder": res.timings["decoder"], "total": total})
                kv[i] = int(res.kv_peak_bytes)
                if grids[i] is None:
                    arr = to_uint8(res.images)
                    grids[i] = make_grid(arr, math.ceil(math.sqrt(len(arr))))
        if progress:
            progress(1.0, "done")
        return list(zip(grids, kv, runs))


def request_from_form(classes, num_images, seed, cfg, top_k, top_p, dtype, repeats,
                      *configurations) -> Request:
    """A `Request` from the page's fields (numbers may come as floats or strings)."""
    return Request(classes=tuple(classes or ()), num_images=_whole(num_images, "number of images"),
                   seed=_whole(seed, "seed"), cfg=_number(cfg, "cfg"),
                   top_k=_whole(top_k, "top-k"), top_p=_number(top_p, "top-p"),
                   dtype=str(dtype), repeats=_whole(repeats, "timed runs"),
                   configurations=tuple(str(c or "") for c in configurations))


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return number


def _whole(value, name: str) -> int:
    number = _number(value, name)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    return int(number)


def default_memory_budget(device: torch.device) -> int | None:
    """What this process may use: the GPU's memory, or on CPU the memory available now plus
    what the process already holds (None when the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    return available + current_rss_bytes()


def _progress_trace(progress: Progress | None, done: int, steps: int, num_scales: int,
                    what: str):
    """A sampler trace that reports each scale and the decoder as a fraction of all steps."""
    if progress is None:
        return None

    def trace(event: str, scale_index: int) -> None:
        if event == "scale":
            progress((done + scale_index) / steps,
                     f"{what}: scale {scale_index + 1}/{num_scales}")
        elif event == "decode":
            progress((done + num_scales) / steps, f"{what}: decoding")

    return trace


def describe_error(err: BaseException) -> str:
    """The message the page shows for a failed request."""
    if isinstance(err, ValueError):
        return str(err)
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return ("the device ran out of memory for this request; use fewer images, a cheaper "
                "configuration or bf16 (the studio keeps serving).")
    return f"the request failed ({type(err).__name__}: {err}); the studio keeps serving."
