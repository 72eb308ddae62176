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

import math
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..front import check_front_settings
from ..images import make_grid, to_uint8
from ..models.cost import CostModel
from ..sampling.configuration import Configuration
from ..sampling.levers import Levers
from ..sampling.plan import DepthPlan
from ..sampling.sampler import generate
from ..sampling.settings import SamplingConfig
from .budgets import Budgets, Progress
from .classes import class_names, labels_for, resolve_classes
from .entries import Entry, parse_entry
from .request import DEFAULT_IMAGES, MAX_CONFIGURATIONS, MAX_REPEATS, ModelInfo, Request


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
        self.max_images = int(max_images)
        self.budgets = Budgets(var, vae, self.info, max_memory=max_memory, profile=profile,
                               front=front, allow_other_device=allow_other_device)
        self._lock = threading.Lock()

    @property
    def front(self) -> dict | None:
        return self.budgets.front

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
        settings = request.sampling
        with self._lock:
            self.budgets.measure_profile(self.budgets.workload(settings, request.num_images),
                                         settings, None)

    def suggestions(self) -> list[str]:
        """Entries offered in the configuration pickers: this model's plans, then budgets
        halfway between the full network and the cheapest plan at the default settings."""
        return self.budgets.suggestions(self.default_request())

    # ---------------------------------------------------------------------------------- checks
    def resolve(self, request: Request) -> tuple[list[int], SamplingConfig, list[Entry]]:
        """Labels, settings and entries of a request; ValueError naming the problem and fix."""
        n = request.num_images
        if not isinstance(n, int) or not 1 <= n <= self.max_images:
            raise ValueError(f"number of images must be 1..{self.max_images}, got {n!r} (the "
                             "studio's --max-images sets the limit).")
        if not 1 <= request.repeats <= MAX_REPEATS:
            raise ValueError(f"timed runs must be 1..{MAX_REPEATS}, got {request.repeats}.")
        settings = request.sampling
        texts = [t for t in (str(c).strip() for c in request.configurations) if t]
        if not texts:
            raise ValueError("choose at least one configuration, e.g. 'full' and 'd2'.")
        if len(texts) > MAX_CONFIGURATIONS:
            raise ValueError(f"compare at most {MAX_CONFIGURATIONS} configurations, got "
                             f"{len(texts)}.")
        entries = [parse_entry(t, self.var.depth, self.var.num_scales) for t in texts]
        classes = resolve_classes(request.classes, self.class_names)
        labels = labels_for(classes, n, self.var.num_classes, request.sampling.seed)
        return labels, settings, entries

    # ---------------------------------------------------------------------------------- run
    def compare(self, request: Request, progress: Progress | None = None) -> Comparison:
        """Sample every configuration of `request` from the same seed and measure it."""
        start = time.perf_counter()
        labels, settings, entries = self.resolve(request)
        with self._lock:  # one device, one request at a time
            if self.front is not None and any(e.is_budget for e in entries):
                check_front_settings(self.front, settings)
            predictor = self.budgets.predictor(settings, len(labels), self.front is None and any(
                e.is_budget and e.budget.max_latency is not None for e in entries), progress)
            chosen = [self.budgets.plan_of(e, predictor) for e in entries]
            configs = [self._configuration(e, plan, settings) for e, (plan, _) in
                       zip(entries, chosen)]
            self.budgets.check_memory(predictor, [c.plan for c in configs])
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


