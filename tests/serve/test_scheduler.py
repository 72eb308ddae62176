"""The scheduler and `auto`'s policy under a fake clock: no model, no threads, no HTTP."""

import pytest
from serve_helpers import FRONT

from variant.front import load_front
from variant.sampling.settings import SamplingConfig
from variant.serve.policy import AutoPolicy, TimeModel, Waiting
from variant.serve.scheduler import Batch, Scheduler, Ticket
from variant.serve.schema import ImageRequest, Limits, RequestError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def front():
    return load_front(FRONT)


def ticket(clock, spec="full", images=1, seed=0, **settings) -> Ticket:
    request = ImageRequest(tuple([0] * images), seed, spec or "auto",
                           SamplingConfig(seed=seed, rng="per-image", **settings))
    return Ticket(request, spec, clock())


def scheduler(clock, front=None, slo=None, **limits) -> Scheduler:
    limits = Limits(**{"max_batch": 4, "max_images": 4, "max_wait": 0.05, **limits})
    times = TimeModel(front)
    policy = AutoPolicy(front, times, slo, max_batch=limits.max_batch) if slo else None
    return Scheduler(limits, times, policy, clock)


def test_a_batch_waits_for_max_wait_unless_full():
    clock = Clock()
    s = scheduler(clock)
    s.submit(ticket(clock, images=1))
    assert s.next_batch() == pytest.approx(0.05)
    clock.now += 0.02
    s.submit(ticket(clock, images=2))
    assert s.next_batch() == pytest.approx(0.03)  # the oldest request's wait counts
    s.submit(ticket(clock, images=1))  # 4 images: full
    batch = s.next_batch()
    assert isinstance(batch, Batch) and batch.images == 4 and len(batch.tickets) == 3
    assert [t.batch for t in batch.tickets] == [(3, 4)] * 3
    assert s.next_batch() == float("inf")


def test_one_configuration_and_one_setting_per_batch_in_arrival_order():
    clock = Clock()
    s = scheduler(clock)
    a, b = ticket(clock, "full"), ticket(clock, "d2")
    c, d = ticket(clock, "full", seed=5), ticket(clock, "full", cfg=3.0)
    for t in (a, b, c, d):
        s.submit(t)
    clock.now += 0.05
    first = s.next_batch()
    assert first.spec == "full" and first.tickets == [a, c]  # seeds may differ, cfg may not
    assert s.next_batch().tickets == [b]
    assert s.next_batch().tickets == [d]


def test_a_batch_stops_at_max_batch_images():
    clock = Clock()
    s = scheduler(clock)
    for images in (3, 2, 1):
        s.submit(ticket(clock, images=images))
    batch = s.next_batch()
    assert batch.images == 3  # the next (2 images) would overflow; order is kept
    clock.now += 0.05
    assert s.next_batch().images == 3


def test_queue_limit_and_draining():
    clock = Clock()
    s = scheduler(clock, max_queue=2)
    s.submit(ticket(clock))
    s.submit(ticket(clock))
    with pytest.raises(RequestError) as err:
        s.submit(ticket(clock))
    assert err.value.status == 429 and "--max-queue" in err.value.message
    assert err.value.retry_after >= 1
    dropped = s.drain()
    assert len(dropped) == 2 and s.next_batch() == float("inf")
    with pytest.raises(RequestError) as err:
        s.submit(ticket(clock))
    assert err.value.status == 503
    assert s.take(timeout=0.01) is None  # the worker ends


def test_a_cancelled_request_leaves_the_queue():
    clock = Clock()
    s = scheduler(clock)
    a, b = ticket(clock), ticket(clock)
    s.submit(a)
    s.submit(b)
    s.cancel(a)
    clock.now += 1
    assert s.next_batch().tickets == [b]


def test_auto_without_a_front_is_refused():
    clock = Clock()
    with pytest.raises(RequestError, match="needs a server started with --front and --slo"):
        scheduler(clock).submit(ticket(clock, spec=None))


def test_online_correction_scales_every_prediction_until_a_configuration_has_its_own(front):
    times = TimeModel(front)
    full, cheap = times.predict("full", 4), times.predict("d2+cfgstop4", 4)
    assert full == pytest.approx(0.3475 * 4 / 16, rel=1e-3)  # the front's time, scaled
    times.observe("full", 4, 2 * full)  # this machine is twice as slow
    assert times.predict("full", 4) == pytest.approx(2 * full)
    assert times.predict("d2+cfgstop4", 4) == pytest.approx(2 * cheap)  # not seen: global
    times.observe("d2+cfgstop4", 4, cheap)
    assert times.predict("d2+cfgstop4", 4) == pytest.approx(cheap)  # its own ratio wins
    times.observe("d8+custom", 2, 1.0)  # off the front: its own seconds per image
    assert times.predict("d8+custom", 4) == pytest.approx(2.0)


def test_auto_trades_quality_for_time_as_the_queue_grows(front):
    clock = Clock()
    s = scheduler(clock, front, slo=1.0, max_queue=100)
    best = s.policy.ranked[0]
    assert best == "full+kv1,2"  # the front's lowest FID
    assert s.policy.choose(clock.now, clock.now, [Waiting(clock.now, 4, None)]) == best
    for _ in range(12):  # 12 requests of 4 images: ~1 s at the front's fastest
        s.submit(ticket(clock, spec=None, images=4))
    chosen = s.next_batch().spec
    times = s.times
    assert times.predict(chosen, 4) < times.predict(best, 4)
    assert chosen != best
    # the chosen configuration keeps every queued request within margin x SLO
    queue = [t.waiting() for t in s.queue]
    ends = s.policy.finishes(clock.now, s.busy_until, queue, chosen)
    assert all(end - w.arrival <= 0.8 for end, w in zip(ends, queue))


def test_auto_refuses_with_retry_after_when_even_the_fastest_misses_the_slo(front):
    clock = Clock()
    s = scheduler(clock, front, slo=0.5, max_queue=100)
    fastest = s.policy.fastest(4)
    per_request = s.times.predict(fastest, 4)
    accepted = 0
    with pytest.raises(RequestError) as err:
        for _ in range(100):
            s.submit(ticket(clock, spec=None, images=4))
            accepted += 1
    assert err.value.status == 429 and "SLO of 0.5 s" in err.value.message
    assert err.value.retry_after >= 1
    assert accepted == int(0.8 * 0.5 // per_request)  # what fits in margin x SLO, fastest
    s.submit(ticket(clock, spec="full", images=4))  # a named configuration is not refused


def test_late_answers_tighten_the_planning_margin_and_timely_ones_restore_it(front):
    policy = AutoPolicy(front, TimeModel(front), 2.0, max_batch=16)
    assert policy.margin == 0.8
    for _ in range(3):
        policy.feedback(1.9)  # over 90% of the SLO
    assert policy.margin == pytest.approx(0.8 * 0.9**3)
    for _ in range(100):
        policy.feedback(0.5)
    assert policy.margin == 0.8
    for _ in range(100):
        policy.feedback(5.0)
    assert policy.margin == 0.3  # never below MIN_MARGIN


def test_auto_keeps_up_with_the_arrival_rate_even_when_the_queue_is_empty(front):
    policy = AutoPolicy(front, TimeModel(front), 2.0, max_batch=16)
    now = 0.0
    assert policy.choose(now, now, []) == "full+kv1,2"  # nothing arriving: the best
    best_per_image = policy.times.predict("full+kv1,2", 4) / 4
    for i in range(100):  # 4 images every 0.1 s: 40 images/s, far more than the best keeps up
        now += 0.1
        policy.arrived(now, 4)
        if i == 20:  # after 2 s the rate is already about right
            assert policy.rate(now) == pytest.approx(40, rel=0.1)
    assert policy.rate(now) == pytest.approx(40, rel=0.1)
    assert 40 * best_per_image > 0.85
    chosen = policy.choose(now, now, [])
    assert policy.rate(now) * policy.times.predict(chosen, 4) / 4 <= 0.85
    assert chosen != "full+kv1,2"
    assert policy.rate(now + 120) < 1  # the rate forgets
    assert policy.choose(now + 120, now + 120, []) == "full+kv1,2"


def test_the_machines_speed_moves_every_prediction_at_once(front):
    times = TimeModel(front)
    times.observe("full", 4, times.prior("full", 4) * 3)
    times.observe("d2", 4, times.prior("d2", 4) * 3 * 0.5)  # d2 does better here than on the front
    base = times.predict("d2", 4) / times.predict("full", 4)
    for _ in range(30):  # the machine gets twice as slow: only full runs meanwhile
        times.observe("full", 4, times.prior("full", 4) * 6)
    assert times.predict("full", 4) == pytest.approx(times.prior("full", 4) * 6, rel=0.02)
    assert times.predict("d2", 4) / times.predict("full", 4) == pytest.approx(base, rel=0.15)


def test_one_run_slowed_by_a_burst_of_load_moves_no_prediction(front):
    times = TimeModel(front)
    for _ in range(8):
        times.observe("full", 4, times.prior("full", 4) * 2)
    before = times.predict("d2", 4)
    times.observe("full", 4, times.prior("full", 4) * 20)
    assert times.predict("d2", 4) == pytest.approx(before, rel=0.05)
