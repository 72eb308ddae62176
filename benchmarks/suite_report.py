"""results.md of the GPU suite (benchmarks/gpu_suite.py): the tables for docs/BENCHMARKS.md, and
the gpu tests' counts read from pytest's JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

MIB = 2**20


def _mib(n) -> str:
    return "-" if n is None else f"{n / MIB:,.1f}"


def _num(x, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def sampling_table(rows: list[dict]) -> list[str]:
    official = {(r["model"], r["batch"], r["dtype"]): r for r in rows if r["impl"] == "official"}
    out = ["| model | impl | plan | batch | dtype | mode | ms/image | images/s | vs official "
           "| transformer ms/image | first call s | peak growth MiB | KV MiB |",
           "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = official.get((r["model"], r["batch"], r["dtype"]))
        ratio = (f"{ref['ms_per_image'] / r['ms_per_image']:.2f}x"
                 if ref is not None and r["impl"] == "ours" else "-")
        mode = r["mode"] + (" (fell back to eager)" if r.get("compile_fell_back") else "")
        out.append(f"| {r['model']} | {r['impl']} | {r['plan']} | {r['batch']} | {r['dtype']} "
                   f"| {mode} | {r['ms_per_image']:.1f} | {r['images_per_s']:.2f} | {ratio} "
                   f"| {_num(r['transformer_ms_per_image'])} | {_num(r['first_call_s'], '.2f')} "
                   f"| {_mib(r['peak_growth_bytes'])} | {_mib(r['kv_bytes'])} |")
    return out


def training_table(rows: list[dict]) -> list[str]:
    official = {r["model"]: r for r in rows if r["impl"] == "official"}
    out = ["| model | impl | plan | batch | dtype | step ms | vs official | peak growth MiB |",
           "|---|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        ref = official.get(r["model"])
        ratio = (f"{ref['step_ms'] / r['step_ms']:.2f}x" if ref is not None and r["impl"] == "ours"
                 else "-")
        out.append(f"| {r['model']} | {r['impl']} | {r['plan']} | {r['batch']} | {r['dtype']} "
                   f"| {r['step_ms']:.1f} | {ratio} | {_mib(r['peak_growth_bytes'])} |")
    return out


def markdown(results: dict) -> str:
    m = results["meta"]
    lines = [f"# GPU suite{' (--tiny)' if m['tiny'] else ''}", "",
             f"{m['device']} ({m['device_name']}), torch {m['torch']}, Python {m['python']}; "
             f"{m['elapsed_s']} s of a {m['budget_s']:g} s budget; "
             f"{'complete' if m['complete'] else 'incomplete'}; official sampler "
             f"{'included' if m['official'] else 'not given'}; median of {m['repeats']} calls.",
             "", "## Sampling", "", *sampling_table(results["sampling"]), "",
             "## Training step", "", *training_table(results["training"]), "", "## gpu tests", ""]
    t = results["tests"]
    if t is None:
        lines.append("not run")
    elif not t.get("ran"):
        lines.append(f"not run: {t['why']}")
    else:
        lines.append(f"passed {t['passed']}, failed {t['failed']}, skipped {t['skipped']} "
                     f"(pytest exit {t['exit']})")
    if results.get("errors"):
        lines += ["", "## Errors", "", *[f"- {e}" for e in results["errors"]]]
    if results["skipped"]:
        lines += ["", "## Not measured (budget)", "", *[f"- {s}" for s in results["skipped"]]]
    return "\n".join(lines) + "\n"


def junit_counts(report: Path, exit_code: int, tail: str) -> dict:
    """Counts of pytest's JUnit XML report (exit 5: nothing selected, e.g. no `gpu` test)."""
    if not Path(report).is_file():
        return {"ran": False, "why": f"pytest wrote no report (exit {exit_code}): {tail}"}
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0))
    errors, skipped = int(suite.get("errors", 0)), int(suite.get("skipped", 0))
    return {"ran": True, "exit": exit_code, "passed": total - failed - errors - skipped,
            "failed": failed + errors, "skipped": skipped}
