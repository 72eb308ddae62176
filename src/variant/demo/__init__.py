"""`variant demo`: the whole VARiant pipeline on the built-in Shapes-10 data, end to end.

tokenizer -> base VAR (full network only, the stand-in for a pretrained VAR) -> progressive
supernet fine-tuning -> quality per plan (built-in metric) -> efficiency benchmark -> scale-depth
asymmetry study (base VAR) -> measured front of the supernet's plans and levers (`variant tune`)
-> asymmetry after supernet training, with the last scale alone as a range (`variant tune` over
range plans) -> (full mode) fixed-ratio vs progressive study over seeds (95% intervals) -> report.

Every step is one `variant` command run in a subprocess, so the report lists exactly the commands
a reader can rerun. Steps whose outputs exist are skipped, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .plans import (
    ZONE_NAMES,
    PlanStudy,
    elastic,
    paper_supernet,
    search,
    zone_fronts,
    zone_supernets,
)
from .plans_report import write_plans_report
from .report import write_report

log = logging.getLogger(__name__)

SUBNETS = ("d4", "d2")  # of the built-in model's 8 layers
# subnet ranges of the asymmetry after supernet training (1-based scales of 6): early, middle,
# late (the trained flexible zone) and the last scale alone
ASYMMETRY_SPECS = ("full", *(f"{d}@{r}" for d in SUBNETS
                             for r in ("r1-r2", "r3-r4", "r5-r6", "r6")))

# the full demo's front: depth alone, each lever alone on the full network, and the combinations
# the shipped model's 15-configuration front (docs/reproduction/front) found informative; a
# subset of tune's default grid, so the whole demo stays under 90 minutes on 2 CPU cores
FULL_FRONT_SPECS = ("full", "d4", "d2", "full+cfgstop4", "full+autoguide=d2",
                    "full+prune0.5@4", "full+kv1,2", "d4+cfgstop4", "d2+cfgstop4",
                    "d4+autoguide=d2")


@dataclass(frozen=True, kw_only=True)
class DemoMode:
    """How much work each step does."""

    name: str
    tokenizer: tuple[str, ...]  # extra flags for train-tokenizer
    base: tuple[str, ...]  # extra flags for the base VAR
    supernet: tuple[str, ...]  # extra flags for the supernet fine-tuning
    study: tuple[str, ...]  # extra flags for each fine-tuning of the ratio study
    num_per_class: int  # images per class for each quality measurement
    study_per_class: int  # images per class for each run of the ratio study
    seeds: tuple[int, ...]  # seeds of the ratio study (empty: no study)
    bench_repeats: int
    tune_seeds: tuple[int, ...] = (0, 1)  # sampling seeds of the front and the asymmetry
    tune_per_class: int = 10  # images per class and seed of the front and the asymmetry
    front_specs: tuple[str, ...] = ()  # configurations of the front (empty: tune's default grid)
    asymmetry_specs: tuple[str, ...] = ASYMMETRY_SPECS
    plans: PlanStudy | None = None  # the per-scale plan study (demo/plans.py); None: none
    plans_only: bool = False  # after the tokenizer and the base VAR, only the plan study


DEMO_MODES = {
    "quick": DemoMode(
        name="quick",
        tokenizer=("--num-images", "1500", "--epochs", "1"),
        base=("--num-images", "2000", "--phase-epochs", "0,0,4"),
        supernet=("--num-images", "2000", "--phase-epochs", "0.5,1,0.5"),
        study=(), num_per_class=20, study_per_class=0, seeds=(), bench_repeats=2,
        tune_seeds=(0, 1), tune_per_class=5,
        front_specs=("full", "d2", "d2+cfgstop4", "full+autoguide=d2"),
        asymmetry_specs=("full", "d4@r5-r6", "d4@r6")),
    "full": DemoMode(
        name="full", tokenizer=(), base=(), supernet=(),
        study=("--num-images", "2500", "--phase-epochs", "0.3,1.2,0.5"),
        num_per_class=50, study_per_class=50, seeds=(0, 1, 2, 3, 4), bench_repeats=5,
        tune_seeds=(0, 1, 2, 3, 4), tune_per_class=50, front_specs=FULL_FRONT_SPECS,
        plans=PlanStudy(zone_seeds=())),  # of the plan study: the elastic supernet and search
    "plans": DemoMode(
        name="plans", tokenizer=(), base=(), supernet=(), study=(), num_per_class=50,
        study_per_class=0, seeds=(), bench_repeats=5, plans=PlanStudy(), plans_only=True),
}
STUDY_RATIOS = ("fixed:0.1", "fixed:1.0", "progressive")


class Demo:
    def __init__(self, out: str | Path, mode: DemoMode, threads: int = 0, jobs: int = 1):
        self.out, self.mode, self.threads, self.jobs = Path(out), mode, threads, max(1, jobs)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        self.log_path = self.out / "commands.jsonl"
        self._lock = threading.Lock()
        self.ran, self.skipped = 0, 0  # steps this invocation ran / found done

    # ------------------------------------------------------------------ running commands
    def variant(self, *args: str, done: Path | None = None, threads: int = 0) -> None:
        """Run `variant ARGS` unless `done` exists; record the command and its duration.

        `threads` > 0 pins the subprocess's OpenMP threads (parallel jobs must not oversubscribe
        the cores: that slows CPU PyTorch down by an order of magnitude).
        """
        cmd = [sys.executable, "-m", "variant", *map(str, args)]
        env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        shown = "variant " + " ".join(shlex.quote(str(a)) for a in args)
        if done is not None and done.exists():
            log.info("skip (done): %s", shown)
            with self._lock:
                self.skipped += 1
            return
        log.info("run: %s", shown)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        name = args[0] if args[0] != "analyze" else f"analyze-{args[1]}"
        with self._lock:
            count = len(list((self.out / "logs").iterdir()))
            logfile = self.out / "logs" / f"{count:02d}-{name}.log"
            logfile.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
            with self.log_path.open("a") as f:
                f.write(json.dumps({"command": shown, "seconds": round(seconds, 1),
                                    "returncode": proc.returncode, "log": logfile.name}) + "\n")
            self.ran += 1
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise RuntimeError(f"step failed ({shown}); see {logfile}:\n{tail}")

    def thread_flags(self) -> tuple[str, ...]:
        return ("--threads", str(self.threads)) if self.threads else ()

    # ------------------------------------------------------------------ steps
    def tokenizer(self) -> Path:
        out = self.out / "tokenizer"
        self.variant("train-tokenizer", "--preset", "builtin", "--out", out, "--no-progress",
                     *self.thread_flags(), *self.mode.tokenizer,
                     done=out / "tokenizer" / "config.json")
        return out / "tokenizer"

    def train(self, preset: str, out: Path, *extra: str, threads: int = 0) -> Path:
        final = out / "final"
        self.variant("train", "--preset", preset, "--out-dir", out, "--no-progress", *extra,
                     done=final / "config.json", threads=threads)
        return final

    def evaluate(self, model: Path, out: Path, per_class: int = 0, threads: int = 0) -> Path:
        per_class = per_class or self.mode.num_per_class
        self.variant("eval", "--model", model, "--plans", "full", *SUBNETS, "--metric",
                     "builtin", "--reference", "builtin", "--num-per-class", str(per_class),
                     "--out", out, done=out / "eval.json", threads=threads)
        return out / "eval.json"

    def bench(self, model: Path) -> Path:
        out = self.out / "bench.json"
        self.variant("bench", "--model", model, "--plans", "full", *SUBNETS, "--batch", "16",
                     "--repeats", str(self.mode.bench_repeats), "--json", out,
                     "--plot", self.out / "bench.png", *self.thread_flags(), done=out)
        return out

    def asymmetry(self, model: Path) -> Path:
        out = self.out / "asymmetry"
        self.variant("analyze", "asymmetry", "--model", model, "--metric", "builtin",
                     "--reference", "builtin", "--num-per-class", str(self.mode.num_per_class),
                     "--out", out, "--json", out / "asymmetry.json",
                     done=out / "asymmetry.json")
        return out / "asymmetry.json"

    def tune(self, model: Path, name: str, *specs: str) -> Path:
        """`variant tune` of the supernet: the default grid, or `specs`; its front.json."""
        out = self.out / name
        seeds = [str(s) for s in self.mode.tune_seeds]
        self.variant("tune", "--model", model, "--out", out, *(("--specs", *specs) if specs
                                                               else ()),
                     "--seeds", *seeds, "--num-per-class", str(self.mode.tune_per_class),
                     "--bench-batch", "16", "--repeats", str(self.mode.bench_repeats),
                     *self.thread_flags(), "--no-progress", done=out / "front.json")
        return out / "front.json"

    def grids(self, model: Path) -> list[Path]:
        paths = []
        for plan in ("full", *SUBNETS):
            path = self.out / f"samples-{plan}.png"
            self.variant("sample", "--model", model, "--plan", plan, "--labels",
                         *[str(c) for c in range(10) for _ in range(2)], "--nrow", "10",
                         "--seed", "0", "--out", path, done=path)
            paths.append(path)
        return paths

    def ratio_study(self, base: Path) -> dict[str, list[Path]]:
        """Fine-tune from the base VAR with each ratio schedule and seed, then evaluate each.

        With `jobs` > 1 the fine-tunings run side by side, one OpenMP thread each.
        """
        runs = [(ratio, seed) for ratio in STUDY_RATIOS for seed in self.mode.seeds]
        threads = 1 if self.jobs > 1 else self.threads

        def one(run: tuple[str, int]) -> Path:
            ratio, seed = run
            tag = f"{ratio.replace(':', '')}-seed{seed}"
            model = self.train("builtin-supernet", self.out / "study" / tag, "--init", base,
                               "--ratio", ratio, "--seed", str(seed), *self.mode.study,
                               threads=threads)
            return self.evaluate(model, self.out / "study" / f"eval-{tag}",
                                 self.mode.study_per_class, threads)

        return self.grouped(runs, one)

    def grouped(self, runs: list[tuple], one) -> dict[str, list]:
        """`one(run)` of every run, `jobs` side by side; the results grouped by `run[0]`, in
        the order of `runs`."""
        with ThreadPoolExecutor(self.jobs) as pool:
            results = list(pool.map(one, runs))
        out: dict[str, list] = {}
        for run, result in zip(runs, results):
            out.setdefault(run[0], []).append(result)
        return out

    def plan_study(self, base: Path, started: float, paper: Path = Path("builtin")) -> Path:
        """The per-scale plan study (demo/plans.py); `paper`: the paper-trained supernet."""
        study = self.mode.plans
        zones = zone_supernets(self, base, study) if study.zone_seeds else {}
        model = elastic(self, base)
        fronts = zone_fronts(self, zones, study) if zones else {}
        searched = search(self, model, study)
        paper_front = paper_supernet(self, paper, searched, study)
        return write_plans_report(self.out, fronts, searched, paper_front, ZONE_NAMES,
                                  time.perf_counter() - started, (self.ran, self.skipped))

    def run(self) -> Path:
        started = time.perf_counter()
        tok = self.tokenizer()
        base = self.train("builtin-base", self.out / "base", "--vae", tok, *self.mode.base)
        if self.mode.plans_only:
            return self.plan_study(base, started)
        supernet = self.train("builtin-supernet", self.out / "supernet", "--init", base,
                              *self.mode.supernet)
        evals = {"base VAR (no supernet training)": self.evaluate(base, self.out / "eval-base"),
                 "VARiant supernet": self.evaluate(supernet, self.out / "eval-supernet")}
        bench = self.bench(supernet)
        asym = self.asymmetry(base)
        fronts = {"front": self.tune(supernet, "front", *self.mode.front_specs),
                  "asymmetry-supernet": self.tune(supernet, "asymmetry-supernet",
                                                  *self.mode.asymmetry_specs)}
        grids = self.grids(supernet)
        study = self.ratio_study(base) if self.mode.seeds else {}
        plans = self.plan_study(base, started, supernet) if self.mode.plans else None
        report = write_report(self.out, self.mode.name, tok, evals, bench, asym, grids, study,
                              time.perf_counter() - started, fronts, (self.ran, self.skipped))
        if plans is not None:
            with report.open("a") as f:
                f.write(f"\n## The per-scale plan study\n\nSee [{plans.relative_to(self.out)}]"
                        f"({plans.relative_to(self.out)}).\n")
        return report
