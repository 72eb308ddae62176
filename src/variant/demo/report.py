"""The markdown report of `variant demo`: tables from the steps' JSON files and logs."""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.analyze import pyplot, save_figure
from ..analysis.stats import difference_interval, interval
from ..eval.evaluate import format_table as format_eval
from ..front import format_front


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


def study_values(study: dict[str, list[Path]], key: str):
    """(plans in order, {ratio: {plan: [value per seed]}}) of the ratio study's eval files."""
    plans: list[str] = []
    values: dict[str, dict[str, list[float]]] = {}
    for ratio, paths in study.items():
        for path in paths:
            for row in _rows(path):
                if row["plan"] not in plans:
                    plans.append(row["plan"])
                values.setdefault(ratio, {}).setdefault(row["plan"], []).append(row.get(key))
    return plans, values


def mean_interval(values: list[float]) -> str:
    """Mean with its 95% Student-t interval over seeds (`analysis.stats.interval`)."""
    iv = interval(values)
    if iv["mean"] is None:
        return "—"
    if iv["low"] is None:
        return f"{iv['mean']:.3f}"
    return f"{iv['mean']:.3f} ({iv['low']:.3f}–{iv['high']:.3f})"


def study_table(study: dict[str, list[Path]], key: str) -> str:
    """Mean and 95% interval over seeds of `key`, per ratio schedule and plan."""
    plans, values = study_values(study, key)
    seeds = max(len(p) for p in study.values())
    lines = [f"| ratio schedule ({seeds} seeds) | " + " | ".join(plans) + " |",
             "|---|" + "---:|" * len(plans)]
    for ratio, per_plan in values.items():
        lines.append(f"| {ratio} | "
                     + " | ".join(mean_interval(per_plan.get(p, [])) for p in plans) + " |")
    return "\n".join(lines)


def study_differences(study: dict[str, list[Path]], key: str,
                      reference: str = "progressive") -> str:
    """Each other schedule's mean minus the `reference` schedule's, per plan, with its 95%
    Welch interval over seeds; ★ where the interval excludes 0."""
    plans, values = study_values(study, key)
    if reference not in values:
        return ""
    lines = [f"| {key}: schedule − {reference} | " + " | ".join(plans) + " |",
             "|---|" + "---:|" * len(plans)]
    for ratio, per_plan in values.items():
        if ratio == reference:
            continue
        cells = []
        for plan in plans:
            d = difference_interval(per_plan.get(plan, []), values[reference].get(plan, []))
            if d["diff"] is None:
                cells.append("—")
            elif d["low"] is None:
                cells.append(f"{d['diff']:+.3f}")
            else:
                star = " ★" if d["low"] > 0 or d["high"] < 0 else ""
                cells.append(f"{d['diff']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f}){star}")
        lines.append(f"| {ratio} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_study(study: dict[str, list[Path]], path: str | Path, key: str = "fid") -> Path | None:
    """Per subnet, one panel: each schedule's full-network mean against its subnet mean, both
    with their 95% intervals over seeds; one marker per schedule, no lines between them."""
    plt = pyplot(path)
    if plt is None:
        return None
    plans, values = study_values(study, key)
    full, subnets = plans[0], plans[1:]
    fig, axes = plt.subplots(1, len(subnets), figsize=(5 * len(subnets), 4.2), squeeze=False)
    markers = "osD^v"
    for ax, sub in zip(axes[0], subnets):
        for i, (ratio, per_plan) in enumerate(values.items()):
            x, y = interval(per_plan.get(full, [])), interval(per_plan.get(sub, []))
            if x["mean"] is None or y["mean"] is None:
                continue
            xerr = None if x["low"] is None else [[x["mean"] - x["low"]], [x["high"] - x["mean"]]]
            yerr = None if y["low"] is None else [[y["mean"] - y["low"]], [y["high"] - y["mean"]]]
            ax.errorbar([x["mean"]], [y["mean"]], xerr=xerr, yerr=yerr,
                        fmt=markers[i % len(markers)], capsize=3, markersize=7,
                        label=f"{ratio} ({x['n']} seeds)", linestyle="none")
        name = key.upper() if key == "fid" else key
        ax.set_xlabel(f"{name} of the full network ({full}); lower is better" if key == "fid"
                      else f"{name} of the full network ({full})")
        ax.set_ylabel(f"{name} of {sub}")
        ax.set_title(f"full vs {sub}: mean and 95% interval over seeds", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, plt, path)


def _wall_time(seconds: float, steps: tuple[int, int] | None) -> str:
    if steps is None:
        return f"Wall time of this invocation: {seconds / 60:.1f} min."
    ran, skipped = steps
    if not skipped:
        return f"Total wall time of this run: {seconds / 60:.1f} min (all {ran} steps ran)."
    return (f"Wall time of this invocation: {seconds / 60:.1f} min; it ran {ran} steps and "
            f"skipped {skipped} that an earlier invocation had done, so it is not the pipeline's "
            "total (each step's own time is in the commands table).")


def _commands(out: Path) -> str:
    lines = ["| # | command | seconds |", "|---:|---|---:|"]
    for i, line in enumerate((out / "commands.jsonl").read_text().splitlines()):
        entry = json.loads(line)
        lines.append(f"| {i} | `{entry['command']}` | {entry['seconds']} |")
    return "\n".join(lines)


def write_report(out: Path, mode: str, tokenizer: Path, evals: dict[str, Path], bench: Path,
                 asymmetry: Path, grids: list[Path], study: dict[str, list[Path]],
                 seconds: float, fronts: dict[str, Path] | None = None,
                 steps: tuple[int, int] | None = None) -> Path:
    """`steps`: (run, skipped) by this invocation; a resumed or rerun demo's wall time covers
    only the steps it ran."""
    parts = [f"# VARiant demo report ({mode} mode)", "",
             "Built-in Shapes-10 data (64 px, 10 classes), built-in tokenizer (6 scales, L = 130), "
             "a depth-8 VAR; subnets d4 and d2 run the last 2 of 6 scales (bridge 4). Quality is "
             "the built-in metric (FID in the metric network's feature space, lower is better; "
             "class accuracy of generated images, higher is better). "
             + _wall_time(seconds, steps), "", "## Tokenizer", "",
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
        figure = plot_study(study, out / "study.png")
        parts += ["## Fixed ratio vs progressive (supernet fine-tuning from the base VAR)", "",
                  "FID (built-in metric), mean and 95% Student-t interval over seeds:", "",
                  study_table(study, "fid"), "",
                  "Class accuracy, mean and 95% interval over seeds:", "",
                  study_table(study, "class_accuracy"), "",
                  "Differences against the progressive schedule (95% Welch interval over seeds; "
                  "★: the interval excludes 0):", "", study_differences(study, "fid"), "",
                  study_differences(study, "class_accuracy"), "",
                  *([f"![study]({figure.name})", ""] if figure else [])]
    parts += ["## Samples (supernet, 2 per class, same seed)", ""]
    parts += [f"![{g.stem}]({g.name})" for g in grids]
    parts += ["", "## Commands", "", _commands(out), ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report
