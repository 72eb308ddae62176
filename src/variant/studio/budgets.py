"""How the studio resolves a budget entry: the planner's predictions (latency from a profile
measured here per workload) or, given a `variant tune` front, its best measured configuration;
both through the one chooser (`efficiency.choice.choose`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from ..efficiency.bench import BenchSettings, profile_scales
from ..efficiency.budget import (
    Predictor,
    Workload,
    candidate_plans,
    check_fits,
    check_profile,
    model_bytes,
    predicted_options,
    runtime_bytes,
)
from ..efficiency.choice import choose
from ..front import check_front_device, check_front_model, front_options
from ..precision import weight_precision
from ..sampling.plan import DepthPlan, default_subnet_depths, resolve_bridge
from ..sampling.settings import SamplingConfig
from ..units import fmt_bytes
from .entries import Entry, budget_label, format_seconds
from .request import ModelInfo, Request

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


class Budgets:
    """Budget entries of one model resolved to configurations, with the latency profiles
    measured here (cached per workload) and the studio's memory limit."""

    def __init__(self, var, vae, info: ModelInfo, *, max_memory: int | None = None,
                 profile: dict | None = None, front: dict | None = None,
                 allow_other_device: bool = False):
        self.var, self.vae, self.info, self.max_memory = var, vae, info, max_memory
        self.profile = profile  # a `variant bench --profile` file, used when it matches
        # a `variant tune` front: budgets then pick its best measured configuration
        self.front, self.allow_other_device = front, allow_other_device
        if front is not None:
            check_front_model(front, var)
        self._profiles: dict[tuple, dict] = {}  # measured here, per workload
        self.weights = weight_precision(var)  # quantised weights: 'int8', 'fp8' or None
        self.weight_bytes = model_bytes(var.config, vae.config, self.weights)

    @property
    def device(self) -> torch.device:
        return self.var.device

    def workload(self, settings: SamplingConfig, num_images: int) -> Workload:
        return Workload(batch=num_images, sampling=settings,
                        device=self.device.type)

    def suggestions(self, request: Request) -> list[str]:
        """Entries offered in the configuration pickers: this model's plans, then budgets
        halfway between the full network and the cheapest plan at the default settings."""
        meta = self.info.meta
        depths = meta.get("subnet_depths") or default_subnet_depths(self.var.depth)
        bridge = resolve_bridge(meta.get("bridge"), self.var.num_scales)  # the trained one
        plans = ["full", *[DepthPlan.paper(self.var.depth, d, bridge, self.var.num_scales).name
                           for d in sorted(depths, reverse=True)]]
        settings = request.sampling
        workload = self.workload(settings, request.num_images)
        predictor = Predictor(self.var.config, self.vae.config, workload,
                              self.latency_profile(workload, settings, None, measure=False))
        candidates = candidate_plans(self.var.depth, self.var.num_scales, meta.get("bridge"),
                                     meta.get("subnet_depths"))
        deep, cheap = predictor.predict(candidates[0]), predictor.predict(candidates[-1])
        budgets = [f"KV under {fmt_bytes((deep.kv_bytes + cheap.kv_bytes) / 2)}"]
        if deep.latency_s is not None:
            budgets.insert(0, "best under "
                              f"{format_seconds((deep.latency_s + cheap.latency_s) / 2)}")
        return plans + budgets

    def predictor(self, settings: SamplingConfig, num_images: int,
                  with_latency: bool = False, progress: Progress | None = None) -> Predictor:
        workload = self.workload(settings, num_images)
        runtime = runtime_bytes(self.device, self.weight_bytes)
        profile = self.latency_profile(workload, settings, progress) if with_latency else None
        return Predictor(self.var.config, self.vae.config, workload, profile, runtime)

    def latency_profile(self, workload: Workload, settings: SamplingConfig,
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
            self.measure_profile(workload, settings, progress)
        return self._profiles.get(key)

    def measure_profile(self, workload: Workload, settings: SamplingConfig,
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
            chosen = choose(entry.budget, predicted_options(predictor, candidates)).chosen.source
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
            chosen = choose(budget, front_options(front, num_images)).chosen
        except ValueError as err:
            raise ValueError(f"budget {entry.text!r}: {err}") from None
        row, meta = chosen.source, front["meta"]
        key = meta["metric_key"]
        q = row["quality"][key]
        band = "" if q["low"] is None else f" ({q['low']:.2f}–{q['high']:.2f})"
        seconds, kv = chosen.costs["latency"], chosen.costs["kv"]
        costs = " and ".join(x for x in (
            None if seconds is None else format_seconds(seconds),
            None if kv is None else f"KV {fmt_bytes(round(kv))}") if x)
        return row["spec"], (
            f"{budget_label(budget)} → {row['spec']} (measured on the front: {key} "
            f"{q['mean']:.2f}{band} over {len(meta['seeds'])} seeds"
            + (f"; {costs} for {num_images} images, scaled from its batch of "
               f"{meta['bench_batch']}" if costs else "") + ")")

    def check_memory(self, predictor: Predictor, plans: Sequence[DepthPlan]) -> None:
        check_fits(predictor, plans, self.max_memory,
                   f"the studio's memory budget of {fmt_bytes(self.max_memory or 0)} "
                   "(--max-memory); use fewer images, a cheaper configuration or bf16.",
                   self.weights)
