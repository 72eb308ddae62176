"""The queue: admission, batches of one configuration, cancellation and draining.

Requests wait in arrival order. The oldest one starts a batch when the batch is full
(`max_batch` images), when it has waited `max_wait`, or when the server drains; the batch takes,
in order, the queued requests that share its configuration and sampling settings (seeds may
differ) up to `max_batch` images. An `auto` batch's configuration is chosen by the policy when
the batch forms; a request that names a configuration runs exactly that one.

All decisions read the injected `clock`, so tests drive the scheduler with a fake one; `take`
is the worker thread's blocking call. Every accepted ticket ends exactly once: with images, an
error, or 503 when the server drains before it ran (`Ticket.future`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .policy import AutoPolicy, TimeModel, Waiting
from .schema import ImageRequest, Limits, RequestError


@dataclass(eq=False)
class Ticket:
    """One accepted request on its way through the queue."""

    request: ImageRequest
    spec: str | None  # the configuration it names (canonical); None: auto
    arrival: float
    future: Future = field(default_factory=Future)
    started: float | None = None  # when its batch was formed
    batch: tuple[int, int] | None = None  # (requests, images) of its batch

    @property
    def images(self) -> int:
        return self.request.num_images

    def group(self) -> tuple:
        """Requests that may share a batch: the same fixed spec (or auto) and settings."""
        return self.spec, self.request.settings.replace(seed=None)

    def waiting(self) -> Waiting:
        return Waiting(self.arrival, self.images, self.spec)


@dataclass
class Batch:
    spec: str  # the configuration every request of the batch runs
    tickets: list[Ticket]
    formed: float

    @property
    def images(self) -> int:
        return sum(t.images for t in self.tickets)


class Scheduler:
    def __init__(self, limits: Limits, times: TimeModel, policy: AutoPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.limits, self.times, self.policy, self.clock = limits, times, policy, clock
        self.queue: list[Ticket] = []
        self.busy_until = 0.0  # predicted end of the running batch
        self.draining = False
        self.stopped = False
        self._cond = threading.Condition()

    # --------------------------------------------------------------------------- admission
    def submit(self, ticket: Ticket) -> None:
        """Queue `ticket`, or RequestError: 503 while draining, 429 when the queue is full or
        (auto) when even the fastest configuration would miss the SLO."""
        with self._cond:
            if self.draining or self.stopped:
                raise RequestError(503, "the server is shutting down; retry on another replica.")
            now = self.clock()
            if len(self.queue) >= self.limits.max_queue:
                raise RequestError(429, f"the queue is full ({len(self.queue)} requests, "
                                        "--max-queue); retry later.", self._drain_estimate(now))
            if ticket.spec is None:
                if self.policy is None:
                    raise RequestError(400, "configuration 'auto' needs a server started with "
                                            "--front and --slo; name a configuration instead.")
                self.policy.arrived(now, ticket.images)  # the demand, refused or not
                late = self.policy.admit(now, self.busy_until, self._waiting(), ticket.waiting())
                if late is not None:
                    raise RequestError(
                        429, f"the server cannot serve this request within its SLO of "
                             f"{self.policy.slo:g} s even with its fastest configuration; "
                             f"retry after {late:g} s.", late)
            self.queue.append(ticket)
            self._cond.notify_all()

    def _waiting(self) -> list[Waiting]:
        return [t.waiting() for t in self.queue]

    def _drain_estimate(self, now: float) -> float:
        """Seconds until the queue would be empty, at least 1 (for Retry-After)."""
        auto = self.policy.fastest(1) if self.policy else None  # auto needs a policy
        work = sum(self.times.predict(t.spec or auto, t.images) for t in self.queue)
        return max(1.0, float(math.ceil(max(now, self.busy_until) - now + work)))

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: drop the ticket if it is still queued (its batch, if it was
        already taken, skips it unless it is running)."""
        with self._cond:
            if ticket in self.queue:
                self.queue.remove(ticket)

    # --------------------------------------------------------------------------- batches
    def next_batch(self) -> Batch | float:
        """The batch to run now, or the seconds to wait before asking again (inf: empty)."""
        now = self.clock()
        if not self.queue:
            return float("inf")
        head = self.queue[0]
        group = [t for t in self.queue if t.group() == head.group()]
        images = sum(t.images for t in group)
        due = head.arrival + self.limits.max_wait
        if images < self.limits.max_batch and now < due and not self.draining:
            return due - now
        spec = head.spec or self.policy.choose(now, self.busy_until, self._waiting())
        taken, total = [], 0
        for t in group:
            if taken and total + t.images > self.limits.max_batch:
                break
            taken.append(t)
            total += t.images
        for t in taken:
            self.queue.remove(t)
            t.started, t.batch = now, (len(taken), total)
        batch = Batch(spec, taken, now)
        self.busy_until = now + sum(self.times.predict(spec, t.images) for t in taken)
        return batch

    def take(self, timeout: float | None = None) -> Batch | None:
        """Block until a batch is due (the worker thread); None when stopped or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self.stopped:
                if self.draining and not self.queue:
                    return None
                out = self.next_batch()
                if isinstance(out, Batch):
                    return out
                wait = out if deadline is None else min(out, deadline - time.monotonic())
                if deadline is not None and wait <= 0:
                    return None
                self._cond.wait(None if wait == float("inf") else wait)
            return None

    def finished(self, batch: Batch, seconds: dict[Ticket, float]) -> None:
        """A batch ran: its requests' times correct the predictions."""
        with self._cond:
            for ticket, s in seconds.items():
                self.times.observe(batch.spec, ticket.images, s)
            self.busy_until = self.clock()

    # --------------------------------------------------------------------------- shutdown
    def drain(self) -> list[Ticket]:
        """Stop accepting; the queued tickets are removed and returned (to answer 503)."""
        with self._cond:
            self.draining = True
            dropped, self.queue = self.queue, []
            self._cond.notify_all()
            return dropped

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()

    @property
    def depth(self) -> tuple[int, int]:
        """(requests, images) waiting."""
        with self._cond:
            return len(self.queue), sum(t.images for t in self.queue)
