"""Configuration entries: what one column of the comparison runs, as typed on the page.

An entry is either
- a configuration spec, exactly as `variant sample --plan` takes it: a plan (`full`, `d4`,
  `d4@bridge3`, `d4@r5-r6`, or a JSON list of per-scale layer lists), optionally with levers
  joined by '+' (`d4+cfgstop4+prune0.5@4`, `full+autoguide=d2`; sampling/configuration.py); or
- a budget: `best under 200 ms`, `under 2 GB`, `KV under 1 MiB`, `memory under 4 GiB and 300 ms`.
  A time is a latency limit per batch; a size is a memory limit (weights + KV + activations)
  unless the clause names the KV cache (`KV`, `cache`). The budget planner
  (`efficiency.budget`) resolves it to the deepest plan predicted to fit; a studio given a
  measured front (`variant studio --front front.json`, from `variant tune`) resolves it to the
  front's best measured configuration within it instead (studio.budgets.Budgets.from_front).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..efficiency.choice import Budget
from ..sampling.configuration import parse_configuration
from ..sampling.plan import DepthPlan
from ..units import fmt_bytes, parse_duration, parse_size

PLAN_EXAMPLES = ("full, d4, d4@bridge3, d4@r5-r6, a JSON list of per-scale layer lists, with "
                 "levers e.g. d4+cfgstop4+prune0.5@4")
BUDGET_EXAMPLES = "best under 200 ms, under 2 GB, KV under 1 MiB, memory under 4 GiB"
ENTRY_HELP = f"a plan ({PLAN_EXAMPLES}) or a budget ({BUDGET_EXAMPLES})"

_BUDGET_WORDS = re.compile(r"\b(under|below|within|max|at most)\b|<=?|≤", re.IGNORECASE)
_CLAUSES = re.compile(r"\s*(?:,|\band\b)\s*", re.IGNORECASE)
_QUANTITY = re.compile(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", re.IGNORECASE)
_KINDS = {"kv": "kv", "cache": "kv", "memory": "memory", "mem": "memory", "ram": "memory",
          "vram": "memory", "latency": "latency", "time": "latency"}
_TIME_UNITS = {"ms", "s", "sec", "min", "h"}
_KIND_NAMES = {"kv": "KV", "memory": "memory", "latency": "latency"}


@dataclass(frozen=True)
class Entry:
    """One configuration as typed (`text`): a plan spec, or a budget to resolve."""

    text: str
    plan: DepthPlan | None = None  # plan entries
    budget: Budget | None = None  # budget entries
    has_levers: bool = False  # a plan entry with levers (resolved with the request's settings)

    @property
    def is_budget(self) -> bool:
        return self.budget is not None


def parse_entry(text: str, depth: int, num_scales: int) -> Entry:
    """An `Entry` of a model with `depth` layers and K scales; ValueError naming the fix."""
    text = " ".join(str(text).split())
    if not text:
        raise ValueError(f"empty configuration: give {ENTRY_HELP}.")
    if _BUDGET_WORDS.search(text):
        return Entry(text, budget=parse_budget(text))
    try:
        plan_spec, levers = parse_configuration(text)
        return Entry(text, plan=DepthPlan.from_spec(plan_spec, depth, num_scales),
                     has_levers=bool(levers))
    except ValueError as err:
        if text.startswith("[") or re.match(r"^(full|d?\d+)", text, re.IGNORECASE):
            raise ValueError(f"configuration {text!r}: {err}") from None
        raise ValueError(f"cannot read configuration {text!r}: give {ENTRY_HELP}.") from None


def parse_budget(text: str) -> Budget:
    """'best under 200 ms', 'KV under 2GiB and memory under 8GB' -> `Budget`."""
    limits: dict[str, float] = {}
    for clause in filter(None, _CLAUSES.split(text)):
        kind = next((_KINDS[w] for w in re.findall(r"[a-z]+", clause.lower()) if w in _KINDS),
                    None)
        m = _QUANTITY.search(clause)
        if m is None:
            raise ValueError(f"budget {text!r}: no limit in {clause!r}; write e.g. "
                             f"{BUDGET_EXAMPLES}.")
        number, unit = m.group(1), m.group(2).lower()
        is_time = unit in _TIME_UNITS
        if not unit:
            raise ValueError(f"budget {text!r}: {number} needs a unit (ms, s for latency; MB, "
                             "GiB for memory or KV), e.g. 200 ms or 2 GB.")
        if kind is None:
            kind = "latency" if is_time else "memory"
        if (kind == "latency") != is_time:
            raise ValueError(f"budget {text!r}: {number} {unit} does not fit a "
                             f"{_KIND_NAMES[kind]} limit; "
                             "use a time (200 ms, 2 s) for latency and a size (2 GB, 512 MiB) "
                             "for memory or KV.")
        try:
            value = parse_duration(number + unit) if is_time else parse_size(number + unit)
        except ValueError as err:
            raise ValueError(f"budget {text!r}: {err}") from None
        if kind in limits:
            raise ValueError(f"budget {text!r} gives two {_KIND_NAMES[kind]} limits; keep one.")
        limits[kind] = value
    return Budget(max_kv=limits.get("kv"), max_memory=limits.get("memory"),
                  max_latency=limits.get("latency"))


def budget_label(budget: Budget) -> str:
    """'latency ≤ 200 ms, KV ≤ 2.00 GiB'."""
    parts = []
    if budget.max_latency is not None:
        parts.append(f"latency ≤ {format_seconds(budget.max_latency)}")
    if budget.max_kv is not None:
        parts.append(f"KV ≤ {fmt_bytes(budget.max_kv)}")
    if budget.max_memory is not None:
        parts.append(f"memory ≤ {fmt_bytes(budget.max_memory)}")
    return ", ".join(parts)


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
