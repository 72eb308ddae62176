"""`variant demo`: run the whole pipeline on the built-in data and write a report."""

from __future__ import annotations

import argparse

from ..demo import DEMO_MODES, Demo
from . import checks


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="end-to-end pipeline on the built-in data, with a report",
        description="Train the built-in tokenizer, a base VAR and a progressive supernet on the "
                    "built-in Shapes-10 data, then measure quality per plan, benchmark, study "
                    "the scale-depth asymmetry and (full mode) fixed vs progressive ratios over "
                    "3 seeds; writes OUT/report.md with tables, plots and sample grids. "
                    "Rerunning resumes: finished steps are skipped.")
    p.add_argument("--mode", choices=sorted(DEMO_MODES), default="quick",
                   help="quick: the whole pipeline on small settings, about 7 minutes on 2 CPU "
                        "cores (a pipeline check: its models are undertrained); full: the shipped "
                        "model and docs/REPRODUCTION.md (82 minutes before the plan study's "
                        "elastic supernet and search were added: about 25 more); plans: after the "
                        "tokenizer and base VAR of --out (trained if missing), the per-scale "
                        "plan study of docs/REPRODUCTION.md (f)-(h) (zone supernets, the elastic "
                        "supernet and the plan search)")
    p.add_argument("--out", type=checks.output_dir, default="runs/demo",
                   help="output folder (default runs/demo)")
    p.add_argument("--threads", type=checks.natural, default=0,
                   help="torch CPU threads for the steps")
    p.add_argument("--jobs", type=checks.count, default=1,
                   help="fine-tunings (and the plan study's measurements) run side by side "
                        "(1 thread each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = Demo(args.out, DEMO_MODES[args.mode], args.threads, args.jobs).run()
    print(f"report: {report}")
    return 0
