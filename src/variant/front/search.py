"""`variant tune --search FAMILY --max-flops X`: a staged search of a plan family under a FLOP
budget, written as a normal `variant tune` front.

    search = PlanSearch.prepare(var, read_family("monotone"), read_flop_budget("60%"),
                                subnets=(4, 2), bridge=4, sampling=..., bench_batch=8,
                                search=SearchSettings(...))   # checks everything, writes nothing
    front = search.run(make_tuner, tune_settings, "runs/search")

Costs are predicted, never measured to filter: every plan of the family (sampling/families.py)
gets its FLOPs per image (head included, as the front records them) and its peak KV bytes at the
timing batch from the one cost model (models/cost.py). The plans within the budget make the
stage-1 set.

Stage 1 (cheap estimate): each stage-1 plan samples `per_class` images per class with one seed
(`seed`, apart from the stage-2 seeds so survivors are not chosen on the images that measure
them) and is scored by the front's metric: the same resumable parts as `variant tune`, under
`{out}/search/`.

Selection (`select`), on the stage-1 quality (the metric key, lower is better for FID) against
predicted FLOPs. A plan qualifies when
  - it is among the `keep` best of its FLOP bin: the range from the cheapest to the costliest
    stage-1 plan cut into `bins` equal bins, so every part of the budget keeps a candidate even
    where the stage-1 noise put a lucky plan on the front, or
  - it is on the stage-1 Pareto front (no other plan is at most as costly and at least as good,
    one of the two strictly).
At most `survivors` qualified plans survive: the bins' picks first, then the other front plans,
each group best first (stage 2 is the costly part: it measures every survivor on all seeds).

Stage 2 measures the full plan (the reference, whatever the budget), the survivors and any extra
configurations (`--specs`) exactly as `variant tune` does (seeds x images, intervals, the cost
bench) into `{out}/front.json`, read unchanged by `plan --front`, the studio and the server.
`{out}/search.json` records the family, the budget, every plan's predicted FLOPs and KV, its
stage-1 quality, and which survived and why. A rerun of the same command resumes both stages
from their parts; one with other search settings is refused (delete search.json to search again
with them: the finished parts are reused).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..atomic import write_text_atomic
from ..jsonfile import read_json
from ..models.cost import CostModel
from ..sampling.configuration import Configuration
from ..sampling.families import PlanFamily
from ..sampling.settings import SamplingConfig
from .tune import PART_HINT, TuneSettings

log = logging.getLogger(__name__)

SEARCH_FORMAT = "variant-search"
BUDGET_SYNTAX = ("a fraction of the full network's FLOPs per image (0.6 or 60%) or FLOPs per "
                 "image with a unit (0.6G, 600M, 6e8flops)")
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(%|[kmgt])?\s*(flops?)?\s*$",
                     re.IGNORECASE)
_UNITS = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


@dataclass(frozen=True)
class FlopBudget:
    """At most `value` FLOPs per image (absolute) or `value` times the full network's."""

    text: str
    value: float
    relative: bool

    def flops(self, full_flops: float) -> float:
        """The budget in FLOPs per image, given the full network's."""
        return self.value * full_flops if self.relative else self.value


def read_flop_budget(text: str) -> FlopBudget:
    """'0.6', '60%' (of the full network), '0.6G', '600M', '6e8flops' (FLOPs per image) ->
    FlopBudget; ValueError naming the syntax."""
    m = _BUDGET.match(str(text)[:100])
    if m is None:
        raise ValueError(f"cannot read the FLOP budget {str(text)[:40]!r}: give {BUDGET_SYNTAX}.")
    number, unit, flops = float(m.group(1)), (m.group(2) or "").lower(), m.group(3)
    if not math.isfinite(number) or number <= 0:
        problem = "must be above zero" if number <= 0 else "is too large to be meant"
        raise ValueError(f"the FLOP budget {text!r} {problem}: give {BUDGET_SYNTAX}.")
    if unit in _UNITS or flops:
        if unit == "%":
            raise ValueError(f"the FLOP budget {text!r} mixes % and FLOPs: give {BUDGET_SYNTAX}.")
        return FlopBudget(str(text).strip(), number * _UNITS.get(unit, 1.0), relative=False)
    relative = number / 100 if unit == "%" else number
    if relative > 1:
        raise ValueError(f"the FLOP budget {text!r} exceeds the full network (a fraction is at "
                         f"most 1 or 100%); for FLOPs per image add a unit, e.g. {number:g}G.")
    return FlopBudget(str(text).strip(), relative, relative=True)


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """What fixes a search's stage 1 and its selection (a resumed search must match it)."""

    per_class: int = 10  # stage-1 images per class
    seed: int = 100  # stage-1 sampling seed
    keep: int = 1  # best plans kept per FLOP bin
    bins: int = 4  # FLOP bins over the stage-1 range
    survivors: int = 6  # at most this many survive

    def __post_init__(self) -> None:
        if min(self.per_class, self.keep, self.bins, self.survivors) < 1 or self.seed < 0:
            raise ValueError("--search-per-class, --keep, --bins and --survivors must be >= 1 "
                             "and --search-seed >= 0.")


@dataclass(frozen=True)
class Candidate:
    """A family plan with its predicted costs at the timing batch (those the front records)."""

    config: Configuration
    gflops_per_image: float
    kv_peak_bytes: int

    @property
    def spec(self) -> str:
        return self.config.name


def predict(var, specs: Sequence[str], sampling: SamplingConfig, bench_batch: int,
            bridge: int | None) -> list[Candidate]:
    """Each spec resolved with the command's settings (bare 'dN' with `bridge`) and its
    predicted costs. A configuration's name spells out any bridge other than the default, so
    the names rebuild the same plans with no bridge given: the search's tune runs take none."""
    cost = CostModel(var.config, sampling.dtype, sampling.rows(bench_batch))
    out = []
    for spec in specs:
        config = Configuration.resolve(spec, var.depth, var.patch_nums, sampling, bridge)
        again = Configuration.resolve(config.name, var.depth, var.patch_nums, sampling)
        if again.plan.layer_sets != config.plan.layer_sets:  # a broken naming invariant
            raise ValueError(f"plan {spec!r} is named {config.name!r}, which names another "
                             "plan; report this (sampling/plan.py names plans).")
        flops = cost.flops(config.plan, include_head=True, levers=config.levers)
        out.append(Candidate(config, flops / bench_batch / 1e9,
                             cost.kv_peak_bytes(config.plan, config.levers)))
    return out


@dataclass(frozen=True)
class Selection:
    """Stage 1's outcome: why each plan qualified, and the survivors (at most the limit)."""

    reasons: dict[str, list[str]]  # every plan that qualified, in the order of the points
    survivors: tuple[str, ...]  # bin picks first, then the other front plans, each best first


def select(points: Sequence[tuple[str, float, float | None]], keep: int, bins: int,
           limit: int | None = None, lower_is_better: bool = True) -> Selection:
    """The survivors of stage 1 (module docstring) among (spec, predicted GFLOPs, quality)
    points; points without a quality never qualify."""
    sign = 1 if lower_is_better else -1
    scored = [(s, g, sign * q) for s, g, q in points if q is not None and math.isfinite(q)]
    reasons: dict[str, list[str]] = {s: [] for s, _, _ in scored}
    for s, g, q in scored:
        if not any(g2 <= g and q2 <= q and (g2 < g or q2 < q) for _, g2, q2 in scored):
            reasons[s].append("on the stage-1 front")
    picks = []
    if scored:
        lo, hi = min(g for _, g, _ in scored), max(g for _, g, _ in scored)
        width = (hi - lo) / bins
        for b in range(bins):
            members = [(q, g, s) for s, g, q in scored
                       if (min(bins - 1, int((g - lo) / width)) if width > 0 else 0) == b]
            for rank, (q, g, s) in enumerate(sorted(members)[:keep], 1):
                picks.append((q, g, s))
                reasons[s].append(f"best {rank} of {len(members)} in FLOP bin {b + 1}/{bins} "
                                  f"({lo + b * width:.3g}-{lo + (b + 1) * width:.3g} GFLOPs)")
    front = [(q, g, s) for s, g, q in scored if reasons[s] and (q, g, s) not in picks]
    order = [s for _, _, s in sorted(picks) + sorted(front)]
    return Selection({s: r for s, r in reasons.items() if r}, tuple(order[:limit]))


class PlanSearch:
    """The candidates of one search, checked before any work (`prepare`), and its two stages."""

    def __init__(self, family: PlanFamily, budget: FlopBudget, subnets: Sequence[int],
                 bridge: int | None, candidates: list[Candidate], full: Candidate,
                 extras: list[Candidate], search: SearchSettings):
        self.family, self.budget, self.subnets, self.bridge = family, budget, subnets, bridge
        self.candidates, self.full, self.extras, self.search = candidates, full, extras, search
        self.budget_gflops = budget.flops(full.gflops_per_image * 1e9) / 1e9
        self.stage1 = [c for c in candidates if c.gflops_per_image <= self.budget_gflops]

    @classmethod
    def prepare(cls, var, family: PlanFamily, budget: FlopBudget, *, subnets: Sequence[int],
                bridge: int | None, sampling: SamplingConfig, bench_batch: int,
                search: SearchSettings, extras: Sequence[str] = ()) -> PlanSearch:
        """The family's plans on `var` with their predicted costs; ValueError when the family
        does not fit the model or the budget is below its cheapest plan."""
        plans = family.plans(var.depth, var.num_scales, subnets, bridge)
        candidates = predict(var, [p.name for p in plans], sampling, bench_batch, None)
        full, *extras_ = predict(var, ["full", *extras], sampling, bench_batch, bridge)
        search_ = cls(family, budget, sorted(subnets, reverse=True), bridge, candidates, full,
                      extras_, search)
        if not search_.stage1:
            cheapest = min(candidates, key=lambda c: c.gflops_per_image)
            ratio = cheapest.gflops_per_image / full.gflops_per_image
            raise ValueError(
                f"--max-flops {budget.text} ({search_.budget_gflops:.3g} GFLOPs per image) is "
                f"below the cheapest plan of the {family.name} family on this model: "
                f"{cheapest.spec} at {cheapest.gflops_per_image:.3g} GFLOPs per image "
                f"({ratio:.1%} of the full network); raise --max-flops to at least "
                f"{math.ceil(ratio * 1000) / 1000:g} (or {cheapest.gflops_per_image:.3g}G).")
        return search_

    def stage1_settings(self, settings: TuneSettings) -> TuneSettings:
        """Stage 1's quality settings: one seed, few images (ValueError when too few)."""
        return replace(settings, seeds=(self.search.seed,), num_per_class=self.search.per_class)

    def settings_record(self) -> dict:
        return {"family": self.family.name, "max_flops": self.budget.text,
                "budget_gflops_per_image": self.budget_gflops, "subnets": list(self.subnets),
                "bridge": self.bridge, **asdict(self.search)}

    def describe(self) -> str:
        """The family's plans with their predicted costs, those within the budget marked."""
        lines = [f"{self.family.name} family, budget {self.budget.text} = "
                 f"{self.budget_gflops:.3g} GFLOPs per image (full network "
                 f"{self.full.gflops_per_image:.3g}); predicted at the timing batch:"]
        for c in self.candidates:
            mark = "stage 1" if c in self.stage1 else "over budget"
            lines.append(f"  {c.spec:<20} {c.gflops_per_image:8.3g} GFLOPs/img "
                         f"{c.kv_peak_bytes / 2**20:8.3f} MiB KV  {mark}")
        fixed = ", ".join(c.spec for c in self.stage2([]))
        return "\n".join(lines + [f"stage 2 measures {fixed} and the stage-1 survivors."])

    def stage2(self, survivors: Sequence[Candidate]) -> list[Candidate]:
        """What stage 2 measures: the full plan, the extras, the survivors (each plan and
        levers once)."""
        out, seen = [], set()
        for c in [self.full, *self.extras, *survivors]:
            key = (c.config.plan.layer_sets, c.config.levers)
            if key not in seen:
                seen.add(key)
                out.append(c)
        return out

    # ------------------------------------------------------------------ the stages
    def run(self, make_tuner: Callable, settings: TuneSettings, out: str | Path) -> dict:
        """Both stages (resumable); `make_tuner(configs, out, settings)` builds a `Tuner`."""
        out = Path(out)
        record_path = out / "search.json"
        self.check_resume(out)
        stage1 = make_tuner([c.config for c in self.stage1], out / "search",
                            self.stage1_settings(settings))
        quality = stage1.measure_quality()
        key = settings.metric_key
        chosen = select([(c.spec, c.gflops_per_image, quality[c.spec][key]["mean"])
                         for c in self.stage1], self.search.keep, self.search.bins,
                        self.search.survivors)
        stage2 = self.stage2([c for c in self.stage1 if c.spec in chosen.survivors])
        record = self._record(quality, chosen, stage2)
        write_text_atomic(record_path, json.dumps(record, indent=2) + "\n")
        log.info("stage 2: %s", ", ".join(c.spec for c in stage2))
        return make_tuner([c.config for c in stage2], out, settings).run()

    def check_resume(self, out: Path) -> None:
        """A search's folder is resumed only with the same search settings; a plain `variant
        tune` front there is not overwritten."""
        path = out / "search.json"
        if not path.is_file():
            if (out / "front.json").is_file():
                raise ValueError(f"{out} holds a `variant tune` front that is not a search's; "
                                 "pass another --out for the search.")
            return
        data = read_json(path, "search record", hint=PART_HINT)
        old = data.get("settings") if isinstance(data, dict) else None
        if not isinstance(old, dict):
            raise ValueError(f"{path} is not a search record (no settings); {PART_HINT}.")
        now = self.settings_record()
        diff = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
        if diff:
            details = "; ".join(f"{k}: {old.get(k)!r} there, {now.get(k)!r} now" for k in diff)
            raise ValueError(f"{out} holds a search with other settings ({details}); pass "
                             "another --out, or delete its search.json to search again with "
                             "these (finished measurements are reused).")

    def _record(self, quality: dict, chosen: Selection, stage2: list[Candidate]) -> dict:
        plans = []
        for c in self.candidates:
            measured = quality.get(c.spec) if c in self.stage1 else None
            reasons = chosen.reasons.get(c.spec, [])
            if c not in self.stage1:
                reasons = ["over the FLOP budget"]
            elif not reasons:
                reasons = ["dominated, not the best of its FLOP bin"]
            elif c.spec not in chosen.survivors:
                reasons = reasons + [f"cut: --survivors {self.search.survivors} kept better "
                                     "ones"]
            plans.append({
                "spec": c.spec, "gflops_per_image": c.gflops_per_image,
                "flops_vs_full": c.gflops_per_image / self.full.gflops_per_image,
                "kv_peak_bytes": c.kv_peak_bytes, "within_budget": c in self.stage1,
                "stage1_quality": None if measured is None else {
                    k: v["mean"] for k, v in measured.items() if isinstance(v, dict)},
                "survived": c.spec in chosen.survivors, "reasons": reasons})
        roles = {c.spec: "reference" if c is self.full else
                 "survivor" if c.spec in chosen.survivors else "extra" for c in stage2}
        return {"format": SEARCH_FORMAT, "version": 1, "settings": self.settings_record(),
                "full": {"spec": self.full.spec, "gflops_per_image": self.full.gflops_per_image,
                         "kv_peak_bytes": self.full.kv_peak_bytes},
                "plans": plans, "stage2": [{"spec": c.spec, "role": roles[c.spec]} for c in stage2]}
