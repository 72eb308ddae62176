"""The demo's per-scale plan study (docs/REPRODUCTION.md (f)-(h)): which scales tolerate a
shallower network when every zone is trained alike, and a supernet trained for a whole family of
per-scale plans, searched under a FLOP budget.

1. Controlled asymmetry: from the base VAR, fine-tune supernets that differ only in their subnet
   zone (`variant train --plan-family zone:A-B`: early 1-2, middle 3-4, late 5-6), equal steps,
   data and ratio schedule, several training seeds; measure each with d4 and d2 on every zone
   (`variant tune`, sampling seeds x images).
2. Elastic supernet: the supernet recipe with `--plan-family monotone` (every non-increasing
   per-scale plan trained), measured on the paper's plans beside the paper-trained supernet.
3. Plan search: `variant tune --search monotone --max-flops X` on the elastic supernet, and the
   searched plans measured on the paper-trained supernet too.

Each step is a `variant` command (demo/__init__.py), skipped when its output exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..jsonfile import read_json

if TYPE_CHECKING:
    from . import Demo

ZONES = ("1-2", "3-4", "5-6")  # early, middle, late: 1-based scales of the built-in model's 6
ZONE_NAMES = {"1-2": "early", "3-4": "middle", "5-6": "late"}
ZONE_SPECS = ("full", *(f"{d}@r{z.replace('-', '-r')}" for d in ("d4", "d2") for z in ZONES))


@dataclass(frozen=True)
class PlanStudy:
    """How much work the plan study does (a part of a DemoMode)."""

    zone_seeds: tuple[int, ...] = (0, 1, 2)  # training seeds per zone
    zone_train: tuple[str, ...] = ("--num-images", "2500", "--phase-epochs", "0.3,1.2,0.5")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # sampling seeds of the search and the paper plans
    # sampling seeds of each zone supernet's measurement: its intervals are over the training
    # runs (one set of 500 images each, as the ratio study of (b): the session's time budget)
    zone_sampling_seeds: tuple[int, ...] = (0,)
    per_class: int = 50  # images per class and sampling seed
    max_flops: str = "0.6"  # the search's FLOP budget per image (fraction of the full network)
    search: tuple[str, ...] = ()  # extra flags of `tune --search` (stage sizes)


def zone_supernets(demo: Demo, base: Path, study: PlanStudy) -> dict[str, list[Path]]:
    """Fine-tune one supernet per (zone, training seed), side by side with `demo.jobs`."""
    runs = [(zone, seed) for seed in study.zone_seeds for zone in ZONES]
    threads = 1 if demo.jobs > 1 else demo.threads

    def one(run: tuple[str, int]) -> Path:
        zone, seed = run
        return demo.train("builtin-supernet", demo.out / "plans" / f"zone{zone}-seed{seed}",
                          "--init", base, "--plan-family", f"zone:{zone}", "--seed", str(seed),
                          *study.zone_train, threads=threads)

    return demo.grouped(runs, one)


def measure(demo: Demo, model: Path, out: Path, specs: tuple[str, ...], study: PlanStudy,
            threads: int = 0, seeds: tuple[int, ...] = ()) -> Path:
    """`variant tune` of `specs` on `model` with the study's seeds (or `seeds`) and images; its
    front.json."""
    demo.variant("tune", "--model", model, "--out", out, "--specs", *specs,
                 "--seeds", *map(str, seeds or study.seeds),
                 "--num-per-class", str(study.per_class),
                 "--bench-batch", "16", "--repeats", str(demo.mode.bench_repeats),
                 *(("--threads", str(threads)) if threads else demo.thread_flags()),
                 "--no-progress", done=out / "front.json", threads=threads)
    return out / "front.json"


def zone_fronts(demo: Demo, models: dict[str, list[Path]], study: PlanStudy) -> dict:
    """Every zone supernet measured with d4 and d2 on every zone (jobs side by side)."""
    runs = [(zone, i, model) for zone, paths in models.items() for i, model in enumerate(paths)]
    threads = 1 if demo.jobs > 1 else 0

    def one(run):
        zone, i, model = run
        return measure(demo, model, demo.out / "plans" / f"front-zone{zone}-seed{i}",
                       ZONE_SPECS, study, threads, study.zone_sampling_seeds)

    return demo.grouped(runs, one)


def elastic(demo: Demo, base: Path) -> Path:
    """The elastic supernet: the supernet recipe, every monotone per-scale plan trained."""
    return demo.train("builtin-supernet", demo.out / "plans" / "elastic", "--init", base,
                      "--plan-family", "monotone", *demo.mode.supernet)


def search(demo: Demo, model: Path, study: PlanStudy) -> Path:
    """`variant tune --search monotone` on the elastic supernet (the paper's plans measured
    alongside); its front.json."""
    out = demo.out / "plans" / "search-elastic"
    demo.variant("tune", "--model", model, "--out", out, "--search", "monotone",
                 "--max-flops", study.max_flops, "--extra", "d4", "d2",
                 "--seeds", *map(str, study.seeds), "--num-per-class", str(study.per_class),
                 "--bench-batch", "16", "--repeats", str(demo.mode.bench_repeats),
                 *study.search, *demo.thread_flags(), "--no-progress", done=out / "front.json")
    return out / "front.json"


def paper_supernet(demo: Demo, model: Path, search_front: Path, study: PlanStudy) -> Path:
    """The paper-trained supernet (`variant train --preset builtin-supernet`: the demo's own,
    or the shipped model, trained by that recipe) on the paper's plans and on every plan the
    search kept."""
    searched = [row["spec"] for row in read_json(search_front, "front file")["rows"]]
    specs = tuple(dict.fromkeys(["full", "d4", "d2", *searched]))
    return measure(demo, model, demo.out / "plans" / "front-paper", specs, study)
