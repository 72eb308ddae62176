"""The server's pieces wired together: admission, the worker thread, answers, draining.

One worker thread runs the batches (one device, one batch at a time); the HTTP layer admits
requests and awaits their tickets. `drain` (SIGTERM) stops admission and answers every queued
request 503 while the running batch finishes and is answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..efficiency.bench import device_name
from ..front import check_front_model, check_front_settings, front_settings, load_front, row_cost
from ..models.cost import CostModel
from ..pretrained import load_model, read_model_config, resolve_source
from ..sampling.configuration import EXAMPLE
from ..sampling.plan import DepthPlan, default_subnet_depths
from ..sampling.settings import SamplingConfig
from ..studio.classes import class_names
from ..studio.request import default_memory_budget
from .engine import Engine, Served, public_source
from .metrics import Metrics
from .policy import AutoPolicy, TimeModel
from .scheduler import Batch, Scheduler, Ticket
from .schema import AUTO, ImageRequest, Limits, RequestError, parse_request

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 4  # images per request when timing each front configuration at start


class Service:
    def __init__(self, engine: Engine, *, class_names: tuple[str, ...], limits: Limits,
                 front: dict | None = None, slo: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.engine, self.class_names, self.limits, self.front = engine, class_names, limits, front
        if front is not None:
            check_front_model(front, engine.var)
        self.times = TimeModel(front)
        self.policy = None
        if front is not None and slo is not None:
            self.policy = AutoPolicy(front, self.times, slo, max_batch=limits.max_batch)
        self.scheduler = Scheduler(limits, self.times, self.policy, clock)
        self.clock = clock
        self.defaults = front_settings(front) if front is not None else SamplingConfig()
        self.default_configuration = AUTO if self.policy else "full"
        var = engine.var
        paper = [DepthPlan.from_spec(f"d{d}", var.depth, var.num_scales).name
                 for d in default_subnet_depths(var.depth)]
        self.metrics = Metrics({"full", *paper, *self.times.rows})
        self.worker: threading.Thread | None = None
        self.replica: str | None = None  # the Ray Serve replica's name (responses say it)
        self.calibrated = False  # /readyz waits for `calibrate`

    # ------------------------------------------------------------------------- requests
    def admit(self, body: bytes) -> Ticket:
        """Parse, check and queue a request body; RequestError otherwise (counted)."""
        asked = [None]  # the configuration, once known (for the metrics' label)
        try:
            return self._admit(body, asked)
        except RequestError as err:
            self.metrics.refused(asked[0] or "-", err.status)
            raise

    def _admit(self, body: bytes, asked: list) -> Ticket:
        request = parse_request(body, class_names=self.class_names, limits=self.limits,
                                defaults=self.defaults,
                                default_configuration=self.default_configuration)
        spec = None
        if request.is_auto:
            asked[0] = AUTO
            if self.policy is None:
                raise RequestError(400, "configuration 'auto' needs a server started with "
                                        "--front and --slo; name a configuration, e.g. "
                                        f"{EXAMPLE}.")
            try:
                check_front_settings(self.front, request.settings)
            except ValueError as err:
                raise RequestError(400, f"auto: {err}") from None
            # the full network bounds the memory of every configuration auto may pick
            self.engine.check_memory(self.engine.configuration("full", request.settings),
                                     request.num_images)
        else:
            config = self.engine.configuration(request.configuration, request.settings)
            spec = asked[0] = config.name
            self.engine.check_memory(config, request.num_images)
        ticket = Ticket(request, spec, self.clock())
        self.scheduler.submit(ticket)
        self.metrics.set_queue(*self.scheduler.depth)
        return ticket

    def answer(self, ticket: Ticket, served: Served, spec: str) -> dict:
        request, config = ticket.request, self.engine.configuration(spec, ticket.request.settings)
        now = self.clock()
        out = {"configuration": config.name, "requested": request.configuration,
               "quality": self.quality(config.name), "labels": list(request.labels),
               "seed": request.seed, "settings": config.settings.to_dict(),
               "images": self.engine.response_images(request, served, self.class_names),
               "queue_s": ticket.started - ticket.arrival, "run_s": served.seconds,
               "total_s": now - ticket.arrival, "timings": served.timings,
               "batch": {"requests": ticket.batch[0], "images": ticket.batch[1]},
               "kv_peak_bytes": served.kv_peak_bytes,
               "command": self.engine.command(request, config)}
        if self.replica is not None:
            out["replica"] = self.replica
        self.metrics.count(config.name, "ok")
        self.metrics.latency.labels(self.metrics.label(config.name)).observe(out["total_s"])
        if request.is_auto:
            self.policy.feedback(out["total_s"])
        return out

    def quality(self, spec: str) -> dict | None:
        """The front's measured quality of `spec` (None: not on the front)."""
        row = self.times.rows.get(spec)
        if row is None:
            return None
        key = self.front["meta"]["metric_key"]
        q = row["quality"][key]
        return {"metric": key, "mean": q["mean"], "low": q["low"], "high": q["high"],
                "seeds": len(self.front["meta"]["seeds"])}

    # ------------------------------------------------------------------------- worker
    def start(self) -> None:
        self.worker = threading.Thread(target=self._work, name="variant-serve-worker",
                                       daemon=True)
        self.worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.drain()
        self.scheduler.stop()
        if self.worker is not None:
            self.worker.join(timeout)

    def drain(self) -> None:
        """No new requests; every queued one is answered 503 (the running batch finishes)."""
        dropped = self.scheduler.drain()
        for ticket in dropped:
            self.metrics.count(ticket.spec or AUTO, "draining")
            ticket.future.set_exception(RequestError(
                503, "the server is shutting down and this request had not started; retry "
                     "on another replica."))
        if dropped:
            log.info("draining: answered %d queued request(s) 503", len(dropped))
        self.metrics.set_queue(0, 0)

    @property
    def ready(self) -> bool:
        return (self.worker is not None and self.worker.is_alive() and self.calibrated
                and not self.scheduler.draining)

    def calibrate(self) -> None:
        """Time every front configuration once on this machine (CALIBRATION_IMAGES images), so
        that `auto` starts from times measured here rather than the front's alone."""
        if self.policy is not None:
            n = min(CALIBRATION_IMAGES, self.limits.max_images)
            settings = self.defaults.replace(seed=0, rng="per-image")
            request = ImageRequest(tuple(i % len(self.class_names) for i in range(n)), 0, AUTO,
                                   settings)
            for spec in self.policy.ranked:
                served = self.engine.run(request, self.engine.configuration(spec, settings))
                self.times.observe(spec, n, served.seconds)
            log.info("auto: timed %d configurations here; this machine runs at %.2fx the "
                     "front's times", len(self.policy.ranked), self.times.speed)
        self.engine.settle_runtime()
        self.calibrated = True

    def _work(self) -> None:
        self.calibrate()
        while (batch := self.scheduler.take()) is not None:
            self.metrics.set_queue(*self.scheduler.depth)
            self.metrics.batch_images.observe(batch.images)
            self._run(batch)

    def _run(self, batch: Batch) -> None:
        seconds = {}
        for ticket in batch.tickets:
            if not ticket.future.set_running_or_notify_cancel():
                continue  # the client went away before its turn
            self.metrics.queue_seconds.observe(ticket.started - ticket.arrival)
            try:
                config = self.engine.configuration(batch.spec, ticket.request.settings)
                served = self.engine.run(ticket.request, config)
            except Exception as err:  # answered 500: accepted requests are never lost
                log.exception("request failed under %s", batch.spec)
                self.metrics.count(batch.spec, "error")
                ticket.future.set_exception(err)
                continue
            seconds[ticket] = served.seconds
            self.metrics.run_seconds.labels(self.metrics.label(batch.spec)).observe(
                served.seconds)
            self.metrics.note_kv(served.kv_peak_bytes)
            ticket.future.set_result((served, batch.spec))
        self.scheduler.finished(batch, seconds)
        if self.policy is not None:
            for spec in self.policy.ranked:
                self.metrics.predicted.labels(spec).set(self.times.predict(spec, 1))

    # ------------------------------------------------------------------------- describe
    def configurations(self) -> dict:
        """What a client may ask for: the front's configurations with their measured costs,
        quality and current predicted time, or without a front the paper's plans."""
        var = self.engine.var
        out = {"model": {"source": public_source(self.engine.source), "depth": var.depth,
                         "num_scales": var.num_scales, "num_classes": var.num_classes,
                         "image_size": self.engine.vae.config.image_size},
               "class_names": list(self.class_names),
               "default_configuration": self.default_configuration,
               "slo_s": self.policy.slo if self.policy else None,
               "auto": None if self.policy is None else {
                   "planning_margin": self.policy.margin,
                   "arrival_rate_images_per_s": self.policy.rate(self.clock()),
                   "machine_speed_vs_front": self.times.speed},
               "settings": self.defaults.to_dict(),
               "spec_syntax": f"any plan with levers, e.g. {EXAMPLE}, full+autoguide=d2",
               "limits": {"max_images": self.limits.max_images,
                          "max_body_bytes": self.limits.max_body_bytes,
                          "max_queue": self.limits.max_queue,
                          "max_batch": self.limits.max_batch},
               "configurations": []}
        if self.front is None:
            cost = CostModel(var.config, self.defaults.dtype, self.defaults.rows(1))
            plans = [var.full_plan()] + [DepthPlan.from_spec(f"d{d}", var.depth, var.num_scales)
                                         for d in sorted(default_subnet_depths(var.depth),
                                                         reverse=True)]
            out["configurations"] = [{"spec": p.name, "predicted_kv_peak_bytes_per_image":
                                      cost.kv_peak_bytes(p)} for p in plans]
            return out
        meta = self.front["meta"]
        for row in self.front["rows"]:
            out["configurations"].append({
                "spec": row["spec"], "family": row["family"], "quality": self.quality(row["spec"]),
                "measured": {"batch": meta["bench_batch"], "total_s": row_cost(
                    self.front, row, "latency"), "kv_peak_bytes": row["cost"]["kv_peak_bytes"],
                    "gflops_per_image": row["cost"]["gflops_per_image"],
                    "device": meta["device_name"], "threads": meta["threads"]},
                "predicted_s_per_image": self.times.predict(row["spec"], 1)})
        return out



@dataclass(frozen=True)
class ServeOptions:
    """What a server (or each Ray replica) is built from: `variant serve`'s flags."""

    model: str = "builtin"
    vae: str | None = None
    revision: str | None = None
    device: str = "cpu"
    seed: int = 0
    front: str | None = None
    slo: float | None = None
    limits: Limits = field(default_factory=Limits)
    max_memory: int | None = None  # None: the memory available at start
    threads: int | None = None  # torch CPU threads (None: torch's default)
    weights: str | None = None  # quantised weights, 'int8' | 'fp8' (None: as stored)


def build_service(options: ServeOptions) -> Service:
    """Load the model (and front) and wire a `Service`; ValueError naming a bad option."""
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device)
    front = load_front(options.front) if options.front else None
    var, vae = load_model(options.model, options.vae, device=device, revision=options.revision,
                          seed=options.seed, weights=options.weights)
    if front is not None:  # (Service checks the front's model)
        meta, here = front["meta"], device_name(device)
        if (meta["device_name"], meta["threads"]) != (here, torch.get_num_threads()):
            log.warning("the front's times were measured on %s with %d threads, this is %s with "
                        "%d: auto starts from them and corrects them by the times it observes",
                        meta["device_name"], meta["threads"], here, torch.get_num_threads())
    meta = {} if resolve_source(options.model, revision=options.revision,
                                hub_files=("config.json",)).kind == "official" else \
        read_model_config(options.model, revision=options.revision)[2]
    engine = Engine(var, vae, source=options.model, vae_source=options.vae,
                    revision=options.revision,
                    max_memory=options.max_memory or default_memory_budget(device))
    return Service(engine, class_names=class_names(var.num_classes, meta), limits=options.limits,
                   front=front, slo=options.slo)
