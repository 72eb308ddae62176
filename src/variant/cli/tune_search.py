"""The flags of `variant tune --search FAMILY --max-flops X` (the plan search, front/search.py)."""

from __future__ import annotations

import argparse

from ..front.search import PlanSearch, SearchSettings, read_flop_budget
from ..sampling.families import SYNTAX, read_family
from . import checks

_FLAGS = ("max_flops", "search_per_class", "search_seed", "keep", "bins", "survivors")


def add_search_args(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group(
        "plan search", "explore a plan family under a FLOP budget: stage 1 scores every plan "
        "within the budget on a few images (one seed), stage 2 measures the survivors, the "
        "full plan and --specs/--extra like any tune configuration; search.json records "
        "why each plan survived; e.g. --search monotone --max-flops 60% --search-per-class 2 "
        "--survivors 4")
    s.add_argument("--search", type=checks.reader(read_family, "plan family"), default=None,
                   metavar="FAMILY", help=f"plan family to search: {SYNTAX}; subnet depths "
                   "from --subnets (default: the model's trained ones); --specs and --extra "
                   "are measured alongside in stage 2, whatever their cost")
    s.add_argument("--max-flops", type=checks.reader(read_flop_budget, "FLOP budget"),
                   default=None, metavar="X", help="FLOP budget per image, predicted by the "
                   "cost model: a fraction of the full network (0.6 or 60%%) or FLOPs with a "
                   "unit (0.6G, 600M); default: the full network's")
    s.add_argument("--search-per-class", type=checks.count, default=None, metavar="N",
                   help="stage-1 images per class and plan (default 10)")
    s.add_argument("--search-seed", type=checks.seed, default=None, metavar="S",
                   help="stage-1 sampling seed (default 100: apart from the stage-2 --seeds)")
    s.add_argument("--keep", type=checks.count, default=None, metavar="K",
                   help="besides the stage-1 front, the best K plans of each FLOP bin survive "
                        "(default 1)")
    s.add_argument("--bins", type=checks.count, default=None, metavar="B",
                   help="FLOP bins over the stage-1 plans' range (default 4)")
    s.add_argument("--survivors", type=checks.count, default=None, metavar="N",
                   help="at most N plans survive to stage 2: the bins' best first, then the "
                        "other stage-1 front plans, best first (default 6)")


def check_search_args(args: argparse.Namespace) -> None:
    """The search flags apply to --search only."""
    given = [f"--{f.replace('_', '-')}" for f in _FLAGS if getattr(args, f) is not None]
    if args.search is None and given:
        raise ValueError(f"{', '.join(given)} apply to the plan search: add --search FAMILY "
                         "(e.g. --search monotone), or drop them.")


def prepare_search(args: argparse.Namespace, var, subnets, bridge: int | None,
                   sampling) -> PlanSearch:
    """The search's plans and predicted costs, checked against the model and the budget before
    any work (ValueError naming the problem)."""
    defaults = SearchSettings()
    search = SearchSettings(
        per_class=args.search_per_class or defaults.per_class,
        seed=defaults.seed if args.search_seed is None else args.search_seed,
        keep=args.keep or defaults.keep, bins=args.bins or defaults.bins,
        survivors=args.survivors or defaults.survivors)
    return PlanSearch.prepare(
        var, args.search, args.max_flops or read_flop_budget("100%"), subnets=subnets,
        bridge=bridge, sampling=sampling, bench_batch=args.bench_batch, search=search,
        extras=[*(args.specs or []), *args.extra])
