"""The markdown report of `variant demo`: tables from the steps' JSON files and logs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .eval.evaluate import format_table as format_eval
from .tune import format_front


def _rows(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())["rows"]


def _log_of(out: Path, command_prefix: str) -> str:
    """The stdout of the last recorded command starting with `command_prefix`."""
    found = ""
    for line in (out / "commands.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["command"].startswith(command_prefix):
            found = (out / "logs" / entry["log"]).read_text().split("\n--- stderr ---\n")[0]
    return found.strip()


def _markdown_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("|") or not line)


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def study_table(study: dict[str, list[Path]], key: str) -> str:
    """Mean ± standard deviation over seeds of `key`, per ratio schedule and plan."""
    plans: list[str] = []
    values: dict[str, dict[str, list[float]]] = {}
    for ratio, paths in study.items():
        for path in paths:
            for row in _rows(path):
                if row["plan"] not in plans:
                    plans.append(row["plan"])
                values.setdefault(ratio, {}).setdefault(row["plan"], []).append(row.get(key))
    seeds = max(len(p) for p in study.values())
    lines = [f"| ratio schedule ({seeds} seeds) | " + " | ".join(plans) + " |",
             "|---|" + "---:|" * len(plans)]
    for ratio, per_plan in values.items():
        lines.append(f"| {ratio} | " + " | ".join(mean_std(per_plan.get(p, [])) for p in plans)
                     + " |")
    return "\n".join(lines)


def _commands(out: Path) -> str:
    lines = ["| # | command | seconds |", "|---:|---|---:|"]
    for i, line in enumerate((out / "commands.jsonl").read_text().splitlines()):
        entry = json.loads(line)
        lines.append(f"| {i} | `{entry['command']}` | {entry['seconds']} |")
    return "\n".join(lines)


def write_report(out: Path, mode: str, tokenizer: Path, evals: dict[str, Path], bench: Path,
                 asymmetry: Path, grids: list[Path], study: dict[str, list[Path]],
                 seconds: float, fronts: dict[str, Path] | None = None) -> Path:
    parts = [f"# VARiant demo report ({mode} mode)", "",
             "Built-in Shapes-10 data (64 px, 10 classes), built-in tokenizer (6 scales, L = 130), "
             "a depth-8 VAR; subnets d4 and d2 run the last 2 of 6 scales (bridge 4). Quality is "
             "the built-in metric (FID in the metric network's feature space, lower is better; "
             "class accuracy of generated images, higher is better). "
             f"Total wall time of this run: {seconds / 60:.1f} min (steps already done were "
             "skipped).", "", "## Tokenizer", "",
             _markdown_lines(_log_of(out, "variant train-tokenizer")) or "(see logs)", ""]
    for title, path in evals.items():
        parts += [f"## Quality: {title}", "", format_eval(_rows(path)), ""]
    parts += ["## Efficiency (this machine)", "", _log_of(out, "variant bench"), "",
              "![bench](bench.png)", "", "## Scale-depth asymmetry (base VAR)", "",
              _log_of(out, "variant analyze asymmetry"), "",
              "![asymmetry](asymmetry/asymmetry.png)",
              ""]
    fronts = fronts or {}
    if "front" in fronts:
        front = json.loads(Path(fronts["front"]).read_text())
        parts += ["## Measured front of the supernet (`variant tune`)", "",
                  f"{front['meta']['interval']}; {front['meta']['num_per_class']} images per "
                  f"class x {front['meta']['num_classes']} classes per seed, seeds "
                  f"{front['meta']['seeds']}.", "", format_front(front), "",
                  "![front](front/front.png)", ""]
    if "asymmetry-supernet" in fronts:
        front = json.loads(Path(fronts["asymmetry-supernet"]).read_text())
        parts += ["## Scale-depth asymmetry after supernet training (`variant tune` over "
                  "range plans; r6 = the last scale alone)", "", format_front(front), ""]
    if study:
        parts += ["## Fixed ratio vs progressive (supernet fine-tuning from the base VAR)", "",
                  "FID (built-in metric), mean ± std over seeds:", "", study_table(study, "fid"),
                  "", "Class accuracy, mean ± std over seeds:", "",
                  study_table(study, "class_accuracy"), "",
                  _log_of(out, "variant analyze pareto"), "", "![pareto](pareto/pareto.png)",
                  ""]
    parts += ["## Samples (supernet, 2 per class, same seed)", ""]
    parts += [f"![{g.stem}]({g.name})" for g in grids]
    parts += ["", "## Commands", "", _commands(out), ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
