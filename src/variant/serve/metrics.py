"""Prometheus metrics of one server, in a registry of its own (so tests can run several).

Configuration labels are bounded: a configuration outside `known` (the front's and the paper's
plans, `auto`) counts as "other", so clients cannot grow the label set with made-up specs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


OUTCOMES = {400: "bad_request", 401: "unauthorized", 413: "bad_request", 422: "bad_request",
            429: "refused", 503: "draining"}  # by HTTP status; others are "error"


class Metrics:
    def __init__(self, known: set[str] = frozenset()) -> None:
        self.known = set(known) | {"auto", "-"}
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "variant_serve_requests", "Requests by configuration (the one that ran, else the "
            "one asked for) and outcome (ok, bad_request, refused, draining, error, "
            "disconnected, unauthorized)", ["configuration", "outcome"], registry=r)
        self.latency = Histogram(
            "variant_serve_request_seconds", "Arrival to answer of requests answered with "
            "images", ["configuration"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_seconds = Histogram(
            "variant_serve_queue_seconds", "Arrival to the start of the request's batch",
            buckets=LATENCY_BUCKETS, registry=r)
        self.run_seconds = Histogram(
            "variant_serve_run_seconds", "One request's sampler call (PNG encoding included)",
            ["configuration"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_images = Histogram(
            "variant_serve_batch_images", "Images per batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.queue_requests = Gauge("variant_serve_queue_requests", "Requests waiting",
                                    registry=r)
        self.queue_images = Gauge("variant_serve_queue_images", "Images waiting", registry=r)
        self.kv_peak = Gauge("variant_serve_kv_peak_bytes", "Largest KV cache bytes one "
                             "request's sampler call held since the start", registry=r)
        self.predicted = Gauge("variant_serve_predicted_seconds_per_image", "auto's current "
                               "(online-corrected) prediction per image", ["configuration"],
                               registry=r)
        self._kv_max = 0

    def label(self, configuration: str | None) -> str:
        return configuration if configuration in self.known else "other"

    def count(self, configuration: str | None, outcome: str) -> None:
        self.requests.labels(self.label(configuration), outcome).inc()

    def refused(self, configuration: str | None, status: int) -> None:
        self.count(configuration, OUTCOMES.get(status, "error"))

    def set_queue(self, requests: int, images: int) -> None:
        self.queue_requests.set(requests)
        self.queue_images.set(images)

    def note_kv(self, nbytes: int) -> None:
        if nbytes > self._kv_max:
            self._kv_max = nbytes
            self.kv_peak.set(nbytes)

    def text(self) -> bytes:
        return generate_latest(self.registry)
