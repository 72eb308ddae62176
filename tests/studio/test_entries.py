import pytest

from variant.sampling.plan import DepthPlan
from variant.studio.entries import budget_label, parse_budget, parse_entry
from variant.units import parse_duration, parse_size


@pytest.mark.parametrize("text", ["full", "d4", "d2@bridge3", "d4@r5-r6",
                                  "[[0],[0,1],[1],[1],[2],[3]]"])
def test_plan_entries_parse_like_variant_sample(text):
    entry = parse_entry(text, 8, 6)
    assert not entry.is_budget
    assert entry.plan == DepthPlan.from_spec(text, 8, 6)


@pytest.mark.parametrize("text, kv, memory, latency", [
    ("best under 200 ms", None, None, "200ms"),
    ("under 2 GB", None, "2GB", None),
    ("KV under 1 MiB", "1MiB", None, None),
    ("kv cache <= 512KiB", "512KiB", None, None),
    ("memory under 4 GiB and 1.5 s", None, "4GiB", "1.5s"),
    ("latency max 2s, KV below 3 MiB", "3MiB", None, "2s"),
])
def test_budget_entries(text, kv, memory, latency):
    entry = parse_entry(text, 8, 6)
    assert entry.is_budget and entry.plan is None
    b = entry.budget
    assert b.max_kv == (kv and parse_size(kv))
    assert b.max_memory == (memory and parse_size(memory))
    assert b.max_latency == (latency and parse_duration(latency))


def test_budget_label():
    assert budget_label(parse_budget("best under 200 ms")) == "latency ≤ 200 ms"
    assert budget_label(parse_budget("KV under 2GiB and 3 s")) == "latency ≤ 3.00 s, KV ≤ 2.00 GiB"


@pytest.mark.parametrize("text, words", [
    ("", "empty configuration"),
    ("d9", "the model has 8 layers"),
    ("d4@bridge9", "bridge must be in 0..6"),
    ("[[0,1]]", "the model has 6"),
    ("[[0,1", "cannot read plan"),
    ("fastest please", "give a plan (full, d4"),
    ("under 200", "needs a unit"),
    ("latency under 2 GB", "does not fit a latency limit"),
    ("KV under 20 ms", "does not fit a KV limit"),
    ("under 1 GB and under 2 GB", "two memory limits"),
    ("best under", "no limit"),
    ("best under 1 us", "budget 'best under 1 us': cannot read the size '1us'"),
])
def test_bad_entries_name_the_problem(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_entry(text, 8, 6)
