"""What the page shows and offers for download, built from a `Comparison` (no web framework).

- `stats_html`: the numbers under one grid;
- `cost_table_html`: one row per configuration (id `cost-table`, read by the browser test);
- `cost_chart_svg`: time, FLOPs and peak KV of each configuration, relative to the full network;
- `sample_command`: the `variant sample` line that writes the same grid PNG;
- `write_downloads`: the grid PNGs, `reproduce.sh` and `costs.json` of one comparison.
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

from ..atomic import write_text_atomic
from ..images import save_png
from ..pretrained import RANDOM_PREFIX
from ..sampling.configuration import folder_name
from ..units import fmt_bytes
from .compare import Comparison, Outcome
from .request import ModelInfo

COLUMNS = ("configuration", "plan", "transformer s", "decoder s", "images/s", "peak KV",
           "GFLOPs/image", "speed-up vs full (transformer)", "KV saving vs full")
_METRICS = (("time", "#4c72b0"), ("FLOPs", "#dd8452"), ("peak KV", "#55a868"))


def _text(text: str) -> str:
    """Text for an HTML text node."""
    return html.escape(text, quote=False)


def _ratio(x: float | None, pattern: str) -> str:
    return "—" if x is None else pattern.format(x)


def cells(outcome: Outcome, num_images: int) -> dict[str, str]:
    """The cost-table cells of one configuration, as displayed."""
    o = outcome
    speedup = "—" if o.speedup is None else (
        f"{o.speedup:.2f}× ({o.speedup_transformer:.2f}×)")
    return {
        "configuration": o.entry.text, "plan": o.name,
        "transformer s": f"{o.median('transformer'):.3f}",
        "decoder s": f"{o.median('decoder'):.3f}",
        "images/s": f"{num_images / o.median('total'):.2f}",
        "peak KV": fmt_bytes(o.kv_peak_bytes),
        "GFLOPs/image": f"{o.flops / num_images / 1e9:.3g}",
        "speed-up vs full (transformer)": speedup,
        "KV saving vs full": _ratio(o.kv_saving, "{:.0%}"),
    }


def stats_html(outcome: Outcome, num_images: int) -> str:
    """The numbers under one grid, in three short lines."""
    o, c = outcome, cells(outcome, num_images)
    if o.is_full:
        versus = "the reference: the full network"
    else:
        faster = ("" if o.speedup is None else
                  f"{o.speedup:.2f}× faster (transformer {o.speedup_transformer:.2f}×), ")
        versus = f"{faster}{c['KV saving vs full']} less KV than full"
    lines = [f"transformer {c['transformer s']} s · decoder {c['decoder s']} s · "
             f"{c['images/s']} images/s",
             f"peak KV {c['peak KV']} · {c['GFLOPs/image']} GFLOPs/image", versus]
    if o.how != "plan":
        lines.insert(0, o.how)
    return "<div class='studio-stats'>" + "<br>".join(map(_text, lines)) + "</div>"


def cost_table_html(comparison: Comparison) -> str:
    """One row per configuration; the footnote says what was measured and what was counted."""
    n = len(comparison.labels)
    head = "".join(f"<th>{_text(c)}</th>" for c in COLUMNS)
    body = ""
    for o in comparison.outcomes:
        c = cells(o, n)
        body += "<tr>" + "".join(f"<td>{_text(c[k])}</td>" for k in COLUMNS) + "</tr>"
    s = comparison.settings
    runs = comparison.request.repeats
    note = (f"{n} images, seed {s.seed}, cfg {s.cfg:g}, top-k {s.top_k}, top-p {s.top_p:g}, "
            f"{s.dtype}, {comparison.device}; times: wall-clock seconds of one batch"
            + (f", median of {runs} runs taken in turns" if runs > 1 else "")
            + "; peak KV: the lean cache's own count; GFLOPs: counted from the plan.")
    if not comparison.measured_full:
        note += (" Speed-ups need the full network in the comparison (add 'full'); KV saving "
                 "is against its counted peak.")
    return (f"<table id='cost-table' class='studio-costs'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table><p class='studio-note'>{_text(note)}</p>")


def cost_chart_svg(comparison: Comparison, width: int = 440, height: int = 200) -> str:
    """Grouped bars: each configuration's time, FLOPs and peak KV, relative to the full network
    (to the largest value when the full network did not run)."""
    outcomes = comparison.outcomes
    values = {"time": [o.median("total") for o in outcomes],
              "FLOPs": [float(o.flops) for o in outcomes],
              "peak KV": [float(o.kv_peak_bytes) for o in outcomes]}
    full = next((i for i, o in enumerate(outcomes) if o.is_full), None)
    refs = {k: (v[full] if full is not None else max(v)) or 1.0 for k, v in values.items()}
    top = max(max(x / refs[k] for x in v) for k, v in values.items())
    left, bottom, plot_h = 36, 38, height - 58
    group_w = (width - left - 10) / len(outcomes)
    bar_w = min(28.0, group_w / (len(_METRICS) + 1))
    y = lambda r: 12 + plot_h * (1 - r / top)  # the y of a ratio r
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' id='cost-chart' viewBox='0 0 {width} "
             f"{height}' width='100%' style='max-width:{width}px' font-family='sans-serif' "
             "font-size='12'>"]
    for tick in (0.0, 0.5, 1.0):
        if tick <= top:
            parts.append(f"<line x1='{left}' x2='{width - 6}' y1='{y(tick):.1f}' "
                         f"y2='{y(tick):.1f}' stroke='#ddd'/><text x='{left - 4}' "
                         f"y='{y(tick) + 4:.1f}' text-anchor='end'>{tick:g}</text>")
    for g, o in enumerate(outcomes):
        x0 = left + g * group_w + (group_w - bar_w * len(_METRICS)) / 2
        for m, (name, colour) in enumerate(_METRICS):
            r = values[name][g] / refs[name]
            parts.append(f"<rect x='{x0 + m * bar_w:.1f}' y='{y(r):.1f}' width='{bar_w - 2:.1f}' "
                         f"height='{y(0) - y(r):.1f}' fill='{colour}'><title>{name}: {r:.2f}"
                         "</title></rect>")
        label = _text(_short(o.name))
        parts.append(f"<text x='{left + (g + 0.5) * group_w:.1f}' y='{height - bottom + 14}' "
                     f"text-anchor='middle'>{label}</text>")
    ref = "full" if full is not None else "the largest"
    legend = "".join(f"<tspan fill='{colour}'>■</tspan> {name}  " for name, colour in _METRICS)
    parts.append(f"<text x='{left}' y='{height - 6}'>{legend}(relative to {ref})</text></svg>")
    return "".join(parts)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def png_name(index: int, outcome: Outcome) -> str:
    """`1-full.png`, `2-d4@bridge3.png`, `3-custom-1a2b3c4d5e.png` (JSON plans)."""
    return f"{index + 1}-{folder_name(outcome.name)}.png"


def sample_command(info: ModelInfo, comparison: Comparison, outcome: Outcome, out: str) -> str:
    """The `variant sample` line that writes this configuration's grid PNG to `out`."""
    labels = comparison.labels
    args = ["variant", "sample", "--model", _source_arg(info.source)]
    if info.vae:
        args += ["--vae", _source_arg(info.vae)]
    if info.revision:
        args += ["--revision", info.revision]
    args += info.model_args
    args += ["--plan", outcome.name, "--labels", *map(str, labels),
             *comparison.settings.cli_args(), "--batch-size", str(len(labels)),
             "--device", comparison.device, "--out", out]
    return shlex.join(args)


def _source_arg(source: str) -> str:
    """A local path made absolute, so that the command runs from any folder."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def commands_text(info: ModelInfo, comparison: Comparison) -> str:
    lines = ["# Reproduce each grid of this comparison (same seed, labels and settings):"]
    if info.source.startswith(RANDOM_PREFIX):
        lines.append("# random:PRESET weights come from --seed: the same seed rebuilds the same "
                     "model only when it equals the studio's --seed.")
    for i, o in enumerate(comparison.outcomes):
        lines.append(f"# {o.entry.text}" + ("" if o.how == "plan" else f": {o.how}"))
        lines.append(sample_command(info, comparison, o, png_name(i, o)))
    return "\n".join(lines) + "\n"


def costs_dict(comparison: Comparison) -> dict:
    n = len(comparison.labels)
    return {"labels": comparison.labels, "settings": comparison.settings.to_dict(),
            "device": comparison.device, "repeats": comparison.request.repeats,
            "configurations": [
                {"entry": o.entry.text, "how": o.how, "plan": o.plan.to_dict(),
                 "kv_peak_bytes": o.kv_peak_bytes, "flops": o.flops,
                 "gflops_per_image": o.flops / n / 1e9, "runs": o.runs,
                 "images_per_s": n / o.median("total"), "speedup": o.speedup,
                 "speedup_transformer": o.speedup_transformer, "kv_saving": o.kv_saving,
                 "flop_ratio": o.flop_ratio} for o in comparison.outcomes]}


def write_downloads(info: ModelInfo, comparison: Comparison, folder: Path) -> list[Path]:
    """The grid PNG of every configuration (what its command writes), `reproduce.sh` and
    `costs.json`, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, o in enumerate(comparison.outcomes):
        paths.append(folder / png_name(i, o))
        save_png(o.grid_HW3, paths[-1])
    for name, text in (("reproduce.sh", commands_text(info, comparison)),
                       ("costs.json", json.dumps(costs_dict(comparison), indent=2) + "\n")):
        paths.append(write_text_atomic(folder / name, text))
    return paths
