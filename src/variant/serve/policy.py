"""Predicted run times, corrected online, and `auto`'s choice of configuration.

A request of n images under configuration c is predicted to take
`prior(c, n) * relative(c) * speed`: `prior` is the front's measured time scaled to n images
(`front.row_cost`); `speed`, this machine now against the front's, is the median of
observed / (prior x relative) over the last SPEED_RUNS runs of any configuration, so it follows
load from other processes for every configuration at once, and one run slowed by a burst of it
moves nothing; `relative(c)`, how c fares here against the front beyond that (1 until
c has run), is a slower moving average of observed / (prior x speed) over c's runs. A configuration
the front lacks is predicted from its own observed seconds per image, or before its first run
from the slowest per-image prediction of the front.

`auto` (`AutoPolicy.choose`) takes the best-quality configuration of the front that keeps up
with the recent arrivals (`auto` images asked for per second, refused ones included: the demand;
over the last RATE_ARRIVALS arrivals, so a burst after a quiet spell counts at once,
times its predicted seconds per image, at most UTILIZATION) and such that, if every queued
`auto` request ran under it, every queued request would finish within `margin x SLO` of its
arrival; when none does, the fastest. `admit` refuses a new `auto`
request (429, Retry-After) when even the fastest configuration cannot finish it within
`margin x SLO`. The margin starts at MARGIN and follows the answers (`feedback`): an `auto`
request answered later than 90% of the SLO shrinks it by 10% (the predictions missed
something: other processes' load, the response path), one answered in time restores 0.01 of
it, so the server plans with the room its own errors need.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..front import row_cost

SMOOTHING = 0.3  # weight of the newest observation in per-image times off the front
SMOOTHING_RELATIVE = 0.1  # ... in a configuration's relative factor: slower than `speed`, so
# that a change of the machine's speed moves `speed`, not the factors of the configurations
# running then
SPEED_RUNS = 9  # the machine's speed: median over this many recent runs
MARGIN = 0.8  # plan for 80% of the SLO: predictions err, and arrivals come in bursts
MIN_MARGIN = 0.3
RATE_ARRIVALS = 16  # the arrival rate: images of the last 16 auto requests over their span
UTILIZATION = 0.85  # the busy share a configuration may need at the recent arrival rate


class TimeModel:
    """Seconds a configuration takes for n images (module docstring)."""

    def __init__(self, front: dict | None):
        self.front = front
        self.rows = {r["spec"]: r for r in front["rows"]} if front else {}
        self.relative: dict[str, float] = {}  # per configuration, beyond the machine's speed
        self._speeds: deque[float] = deque(maxlen=SPEED_RUNS)  # recent observed / predicted
        self.per_image: dict[str, float] = {}  # observed seconds per image (no prior)

    @property
    def speed(self) -> float | None:
        """This machine now against the front's (None before the first run)."""
        return statistics.median(self._speeds) if self._speeds else None

    def prior(self, spec: str, n: int) -> float | None:
        row = self.rows.get(spec)
        return None if row is None else row_cost(self.front, row, "latency", n)

    def predict(self, spec: str, n: int) -> float:
        prior = self.prior(spec, n)
        if prior is not None:
            return prior * self.relative.get(spec, 1.0) * (self.speed or 1.0)
        if spec in self.per_image:
            return self.per_image[spec] * n
        known = [self.predict(s, 1) for s in self.rows] + list(self.per_image.values())
        return (max(known) if known else 0.0) * n

    def observe(self, spec: str, n: int, seconds: float) -> None:
        prior = self.prior(spec, n)
        if prior is None:
            self.per_image[spec] = _average(self.per_image.get(spec), seconds / n)
        elif prior > 0:
            ratio = seconds / prior
            self._speeds.append(ratio / self.relative.get(spec, 1.0))
            self.relative[spec] = _average(self.relative.get(spec), ratio / self.speed,
                                           SMOOTHING_RELATIVE)


def _average(old: float | None, new: float, weight: float = SMOOTHING) -> float:
    return new if old is None else (1 - weight) * old + weight * new


@dataclass(frozen=True)
class Waiting:
    """A queued request as the policy sees it: arrival time, images, fixed spec (None: auto)."""

    arrival: float
    images: int
    spec: str | None


class AutoPolicy:
    """`auto` over a front's configurations under an SLO (module docstring)."""

    def __init__(self, front: dict, times: TimeModel, slo: float, *, max_batch: int,
                 margin: float = MARGIN):
        if slo <= 0:
            raise ValueError(f"--slo must be positive, got {slo}.")
        key = front["meta"]["metric_key"]
        usable = [r for r in front["rows"] if r["quality"][key]["mean"] is not None]
        if not usable:
            raise ValueError(f"no configuration of the front has a measured {key}; rerun "
                             "`variant tune`.")
        # best quality first (lower is better, as `choose_from_front` reads the front)
        self.ranked = [r["spec"] for r in sorted(usable, key=lambda r: r["quality"][key]["mean"])]
        self.times, self.slo, self.margin, self.max_batch = times, slo, margin, max_batch
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=RATE_ARRIVALS)

    def arrived(self, now: float, images: int) -> None:
        """An auto request of `images` images was admitted at `now`."""
        self._arrivals.append((now, images))

    def rate(self, now: float) -> float:
        """Auto images asked for per second: the last RATE_ARRIVALS requests' images over the
        time from the first of them to `now` (at least a second; 0 before any)."""
        if not self._arrivals:
            return 0.0
        return sum(n for _, n in self._arrivals) / max(1.0, now - self._arrivals[0][0])

    def fastest(self, images: int) -> str:
        return min(self.ranked, key=lambda s: self.times.predict(s, images))

    def finishes(self, now: float, busy_until: float, queue: Sequence[Waiting],
                 auto_spec: str) -> list[float]:
        """Predicted finish time of each queued request (in order, one after another) when the
        auto requests run `auto_spec`; the running batch ends at `busy_until`."""
        t, out = max(now, busy_until), []
        for w in queue:
            t += self.times.predict(w.spec or auto_spec, w.images)
            out.append(t)
        return out

    def choose(self, now: float, busy_until: float, queue: Sequence[Waiting]) -> str:
        """The best configuration that keeps up with the arrivals and keeps every queued
        request within margin x SLO (module docstring)."""
        limit, rate = self.margin * self.slo, self.rate(now)
        size = max((w.images for w in queue), default=1)
        for spec in self.ranked:
            if rate * self.times.predict(spec, size) / size > UTILIZATION:
                continue
            ends = self.finishes(now, busy_until, queue, spec)
            if all(end - w.arrival <= limit for end, w in zip(ends, queue)):
                return spec
        return self.fastest(size)

    def admit(self, now: float, busy_until: float, queue: Sequence[Waiting],
              new: Waiting) -> float | None:
        """None when `new` can finish within margin x SLO under the fastest configuration;
        else the seconds after which it could (for Retry-After)."""
        fastest = self.fastest(new.images)
        end = self.finishes(now, busy_until, [*queue, new], fastest)[-1]
        late = end - new.arrival - self.margin * self.slo
        return None if late <= 0 else max(1.0, math.ceil(late))

    def feedback(self, seconds: float) -> None:
        """An auto request was answered `seconds` after its arrival (module docstring)."""
        if seconds > 0.9 * self.slo:
            self.margin = max(MIN_MARGIN, self.margin * 0.9)
        else:
            self.margin = min(MARGIN, self.margin + 0.01)
