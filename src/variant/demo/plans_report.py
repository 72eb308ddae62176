"""Tables and figures of the per-scale plan study (demo/plans.py), from the fronts it measured.

Zone study: each training run's FID of a configuration is its front row's mean over the sampling
seeds; intervals are 95% Student-t over the training runs (analysis/stats.py), differences carry
95% Welch intervals. A subnet's damage is ΔFID = FID(subnet plan) − FID(full), taken within each
run; per FLOP it is ΔFID divided by the plan's FLOP saving in percent of the full network's
(predicted by the cost model, the same for every run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..analysis.analyze import pyplot, save_figure
from ..analysis.stats import difference_interval, interval
from ..jsonfile import read_json


def _rows(front: Path | dict) -> dict[str, dict]:
    data = front if isinstance(front, dict) else read_json(front, "front file")
    return {row["spec"]: row for row in data["rows"]}


def _fid(row: dict) -> float:
    return row["quality"]["fid"]["mean"]


def _cell(iv: dict, digits: int = 2, signed: bool = False) -> str:
    """'mean (low to high)' of an interval or a difference (signed, ★ when it excludes 0)."""
    if iv.get("mean") is None and iv.get("diff") is None:
        return "—"
    mean = iv["mean"] if "mean" in iv else iv["diff"]
    sign = "+" if "diff" in iv or signed else ""
    if iv["low"] is None:
        return f"{mean:{sign}.{digits}f}"
    star = " ★" if "diff" in iv and (iv["low"] > 0 or iv["high"] < 0) else ""
    low, high = f"{iv['low']:{sign}.{digits}f}", f"{iv['high']:{sign}.{digits}f}"
    return f"{mean:{sign}.{digits}f} ({low} to {high}){star}"


def zone_values(fronts: dict[str, list[Path]]) -> tuple[list[str], dict, dict]:
    """(specs, per trained zone and spec the FIDs of its runs, spec -> FLOP saving in %)."""
    specs: list[str] = []
    fids: dict[str, dict[str, list[float]]] = {}
    saving: dict[str, float] = {}
    for zone, paths in fronts.items():
        for path in paths:
            rows = _rows(path)
            full = rows["full"]["cost"]["flops"]
            for spec, row in rows.items():
                specs += [spec] if spec not in specs else []
                fids.setdefault(zone, {}).setdefault(spec, []).append(_fid(row))
                saving[spec] = 100.0 * (1 - row["cost"]["flops"] / full)
    return specs, fids, saving


def damage(fids: dict[str, list[float]], spec: str) -> list[float]:
    """ΔFID of `spec` against the full network, run by run."""
    return [s - f for s, f in zip(fids[spec], fids["full"])]


def zone_table(fronts: dict[str, list[Path]], names: dict[str, str]) -> str:
    """FID of every configuration on every zone supernet: mean and 95% interval over runs."""
    specs, fids, _ = zone_values(fronts)
    runs = min(len(p) for p in fronts.values())
    lines = [f"| trained zone ({runs} runs) | " + " | ".join(specs) + " |",
             "|---|" + "---:|" * len(specs)]
    for zone, per_spec in fids.items():
        lines.append(f"| {names.get(zone, zone)} (scales {zone}) | "
                     + " | ".join(_cell(interval(per_spec.get(s, []))) for s in specs) + " |")
    return "\n".join(lines)


def own_zone_table(fronts: dict[str, list[Path]], names: dict[str, str],
                   depths: Sequence[str] = ("d4", "d2")) -> str:
    """Each supernet's subnets on its own trained zone: ΔFID, FLOP saving, ΔFID per % saved."""
    _, fids, saving = zone_values(fronts)
    lines = ["| trained zone | subnet | FLOP saving | ΔFID (95% interval over runs) | "
             "ΔFID per % of FLOPs saved |", "|---|---|---:|---:|---:|"]
    for zone, per_spec in fids.items():
        for depth in depths:
            spec = own_spec(depth, zone)
            delta = damage(per_spec, spec)
            per_flop = [d / saving[spec] for d in delta]
            lines.append(f"| {names.get(zone, zone)} (scales {zone}) | {spec} | "
                         f"{saving[spec]:.1f}% | {_cell(interval(delta), signed=True)} | "
                         f"{_cell(interval(per_flop), 3, signed=True)} |")
    return "\n".join(lines)


def own_zone_differences(fronts: dict[str, list[Path]], names: dict[str, str],
                         depths: Sequence[str] = ("d4", "d2")) -> str:
    """Zone against zone, own-zone ΔFID and ΔFID per % saved: 95% Welch intervals (★: beyond)."""
    _, fids, saving = zone_values(fronts)
    zones = list(fids)
    lines = ["| subnet | zones compared | ΔFID difference | per-% difference |",
             "|---|---|---:|---:|"]
    for depth in depths:
        for i, a in enumerate(zones):
            for b in zones[i + 1:]:
                sa, sb = own_spec(depth, a), own_spec(depth, b)
                da, db = damage(fids[a], sa), damage(fids[b], sb)
                pa = [d / saving[sa] for d in da]
                pb = [d / saving[sb] for d in db]
                lines.append(f"| {depth} | {names.get(a, a)} − {names.get(b, b)} | "
                             f"{_cell(difference_interval(da, db))} | "
                             f"{_cell(difference_interval(pa, pb), 3)} |")
    return "\n".join(lines)


def own_spec(depth: str, zone: str) -> str:
    first, last = zone.split("-")
    return f"{depth}@r{first}-r{last}"


def plot_zones(fronts: dict[str, list[Path]], names: dict[str, str], path: str | Path,
               depths: Sequence[str] = ("d4", "d2")) -> Path | None:
    """ΔFID of each subnet on each zone, one panel per trained zone: mean and 95% interval
    over training runs; the own zone's marker filled."""
    plt = pyplot(path)
    if plt is None:
        return None
    _, fids, _ = zone_values(fronts)
    zones = list(fids)
    fig, axes = plt.subplots(1, len(zones), figsize=(4.2 * len(zones), 3.8), sharey=True,
                             squeeze=False)
    for ax, trained in zip(axes[0], zones):
        for j, depth in enumerate(depths):
            for k, zone in enumerate(zones):
                iv = interval(damage(fids[trained], own_spec(depth, zone)))
                err = (None if iv["low"] is None
                       else [[iv["mean"] - iv["low"]], [iv["high"] - iv["mean"]]])
                ax.errorbar([k + (j - 0.5) * 0.25], [iv["mean"]], yerr=err, capsize=3,
                            fmt="o" if j == 0 else "s", color=f"C{j}",
                            mfc=f"C{j}" if zone == trained else "white", linestyle="none",
                            label=f"{depth}" if k == 0 else None)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(zones)), [f"{names.get(z, z)}\n(scales {z})" for z in zones])
        ax.set_title(f"supernet trained on the {names.get(trained, trained)} zone", fontsize=9)
        ax.set_xlabel("subnet applied on")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="filled: own zone", title_fontsize=7)
    axes[0][0].set_ylabel("ΔFID vs the same model's full network\n(mean, 95% interval over runs)")
    return save_figure(fig, plt, path)


def per_seed(row: dict) -> list[float]:
    return row["quality"]["fid"]["per_seed"]


def dominance_table(searched: Path | dict, reference: Path | dict,
                    reference_specs: Sequence[str] = ("d4", "d2")) -> str:
    """For each reference plan (the paper's, on the paper-trained supernet): the searched plans
    that cost no more (FLOPs and KV both at most its own), the best of them by mean FID, and
    its FID minus the reference's with the 95% Welch interval over sampling seeds (★: the
    interval excludes 0; negative: the searched plan is better)."""
    found, ref = _rows(searched), _rows(reference)
    lines = ["| paper plan (paper-trained) | its FID | GFLOPs/image | KV MiB | best searched "
             "plan at no more cost | its FID | FID difference |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for spec in reference_specs:
        r = ref[spec]
        cheaper = [row for row in found.values()
                   if row["cost"]["flops"] <= r["cost"]["flops"]
                   and row["cost"]["kv_predicted_bytes"] <= r["cost"]["kv_predicted_bytes"]]
        gflops = r["cost"]["gflops_per_image"]
        kv = r["cost"]["kv_predicted_bytes"] / 2**20
        if not cheaper:
            lines.append(f"| {spec} | {_fid(r):.2f} | {gflops:.3f} | {kv:.1f} | none | — | — |")
            continue
        best = min(cheaper, key=_fid)
        diff = difference_interval(per_seed(best), per_seed(r))
        lines.append(f"| {spec} | {_cell(r['quality']['fid'])} | {gflops:.3f} | {kv:.1f} | "
                     f"{best['spec']} ({best['cost']['gflops_per_image']:.3f} GFLOPs, "
                     f"{best['cost']['kv_predicted_bytes'] / 2**20:.1f} MiB) | "
                     f"{_cell(best['quality']['fid'])} | {_cell(diff)} |")
    return "\n".join(lines)


def plot_search(groups: dict[str, Path | dict], path: str | Path,
                specs: dict[str, Sequence[str] | None] | None = None) -> Path | None:
    """FID against GFLOPs per image, mean and 95% interval over sampling seeds; one marker per
    group (supernet and plan family), no lines between points."""
    plt = pyplot(path)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "os^Dv<>"
    for i, (label, front) in enumerate(groups.items()):
        rows = [row for spec, row in _rows(front).items()
                if not specs or specs.get(label) is None or spec in specs[label]]
        x = [row["cost"]["gflops_per_image"] for row in rows]
        fid = [row["quality"]["fid"] for row in rows]
        err = [[f["mean"] - (f["low"] if f["low"] is not None else f["mean"]) for f in fid],
               [(f["high"] if f["high"] is not None else f["mean"]) - f["mean"] for f in fid]]
        ax.errorbar(x, [f["mean"] for f in fid], yerr=err, fmt=markers[i % len(markers)],
                    capsize=3, markersize=6, linestyle="none", label=label, alpha=0.85)
    ax.set_xlabel("GFLOPs per image (cost model)")
    ax.set_ylabel("FID, built-in metric (lower is better)\nmean and 95% interval over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, plt, path)


def plot_depths(specs: Sequence[str], depth: int, num_scales: int, path: str | Path,
                labels: Sequence[str] | None = None) -> Path | None:
    """The depth each scale runs under each plan: one row per plan, one cell per scale."""
    from ..sampling.plan import DepthPlan

    plt = pyplot(path)
    if plt is None:
        return None
    grid = [[len(DepthPlan.from_spec(spec, depth, num_scales).layers_at(k))
             for k in range(num_scales)] for spec in specs]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * num_scales, 0.9 + 0.42 * len(specs)))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=depth, aspect="auto")
    for r, row in enumerate(grid):
        for k, d in enumerate(row):
            ax.text(k, r, str(d), ha="center", va="center", fontsize=8,
                    color="white" if d < depth / 2 else "black")
    ax.set_xticks(range(num_scales), [str(k + 1) for k in range(num_scales)])
    ax.set_yticks(range(len(specs)), labels or specs, fontsize=8)
    ax.set_xlabel("scale (coarse to fine)")
    fig.colorbar(image, ax=ax, label="layers run")
    return save_figure(fig, plt, path)


def write_plans_report(out: Path, zones: dict[str, list[Path]], search: Path, paper: Path,
                       names: dict[str, str], seconds: float, steps: tuple[int, int],
                       depth: int = 8, num_scales: int = 6) -> Path:
    """OUT/plans/report.md with the study's tables and figures (module docstring)."""
    folder = out / "plans"
    figures = {"zones": plot_zones(zones, names, folder / "zones.png") if zones else None,
               "search": plot_search({"paper plans, paper-trained supernet": paper,
                                      "searched plans, elastic supernet": search,
                                      "searched plans, paper-trained supernet": paper},
                                     folder / "search.png",
                                     {"paper plans, paper-trained supernet": ("full", "d4", "d2"),
                                      "searched plans, elastic supernet": None,
                                      "searched plans, paper-trained supernet": [
                                          s for s in _rows(paper) if s not in
                                          ("full", "d4", "d2")]})}
    found = sorted(_rows(search).values(), key=lambda r: r["cost"]["flops"])
    figures["depths"] = plot_depths([r["spec"] for r in found], depth, num_scales,
                                    folder / "depths.png",
                                    [f"{r['spec']}  FID {_fid(r):.2f}" for r in found])
    ran, skipped = steps
    parts = ["# The per-scale plan study (demo, plans mode)", "",
             f"{seconds / 60:.1f} minutes for the {ran} steps this invocation ran "
             f"({skipped} found done).", ""]
    if zones:
        parts += ["## Controlled asymmetry: FID of each configuration on each zone supernet", "",
                  zone_table(zones, names), "",
                  "## Each supernet's subnets on its own zone", "",
                  own_zone_table(zones, names), "", own_zone_differences(zones, names), ""]
    parts += ["## Searched plans (elastic supernet) against the paper's plans (paper-trained)",
              "", dominance_table(search, paper), "",
              "### Every plan on both supernets (FID, 95% interval over sampling seeds)", "",
              both_supernets_table(search, paper), ""]
    parts += [f"![{name}]({path.name})" for name, path in figures.items() if path]
    report = folder / "report.md"
    report.write_text("\n".join(parts) + "\n")
    return report


def both_supernets_table(search: Path | dict, paper: Path | dict) -> str:
    """The plans measured on both supernets: FID on each and elastic − paper (Welch, ★)."""
    found, ref = _rows(search), _rows(paper)
    lines = ["| plan | GFLOPs/image | elastic supernet | paper-trained supernet | "
             "elastic − paper |", "|---|---:|---:|---:|---:|"]
    for spec in sorted(set(found) & set(ref), key=lambda s: -found[s]["cost"]["flops"]):
        a, b = found[spec], ref[spec]
        lines.append(f"| {spec} | {a['cost']['gflops_per_image']:.3f} | "
                     f"{_cell(a['quality']['fid'])} | {_cell(b['quality']['fid'])} | "
                     f"{_cell(difference_interval(per_seed(a), per_seed(b)))} |")
    return "\n".join(lines)
