"""`front.png` of `variant tune`: quality against latency and against KV bytes.

One colour and marker per lever family, error bars (quality: the 95% interval over seeds;
latency: the interquartile range of the timed runs), the front as a step line through its own
points only, and every point labelled with its spec where the label overlaps no other label and
no marker (`place_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..analysis.analyze import pyplot, save_figure
from .tune import families

MARKER_SIZE = 7  # points
STYLE = {"depth": ("tab:blue", "o"), "cfg-stop": ("tab:orange", "s"),
         "guide plan": ("tab:green", "^"), "autoguidance": ("tab:olive", "v"),
         "pruning": ("tab:red", "D"), "KV retention": ("tab:purple", "P"),
         "combination": ("tab:brown", "*")}
# styles of the families of levers declared without one here (precision levers, a new lever)
_SPARE = (("tab:pink", "X"), ("tab:cyan", "h"), ("tab:gray", "p"), ("gold", "d"),
          ("teal", "8"), ("black", "x"))


def style(family: str) -> tuple[str, str]:
    """(colour, marker) of a family: its own, or a spare one in declaration order."""
    if family in STYLE:
        return STYLE[family]
    others = [f for f in families() if f not in STYLE]
    index = others.index(family) if family in others else len(others)
    return _SPARE[min(index, len(_SPARE) - 1)]
# candidate label positions around a point, in points from it: (dx, dy, horizontal alignment),
# nearest first; the far ones get a thin leader line back to the point
_NEAR = [(5, 3, "left"), (5, -9, "left"), (-5, 3, "right"), (-5, -9, "right"),
         (0, 7, "center"), (0, -13, "center")]
_FAR = [(dx * k, dy * k + (3 if dy > 0 else -3), ha) for k in (2.5, 4, 6) for dx, dy, ha in _NEAR]


def place_labels(ax, points: Sequence[tuple[float, float, str]], fontsize: float = 6) -> list:
    """Label each (x, y, text) at the first candidate position whose box stays inside the axes
    and overlaps neither a label already placed nor a marker; a label that fits nowhere takes
    its nearest position. Draws the figure once to know the text sizes; returns the labels."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    radius = (MARKER_SIZE / 2 + 1) * fig.dpi / 72  # half a marker and a point, in pixels
    pixels = ax.transData.transform([(p[0], p[1]) for p in points])
    taken = [_box(px - radius, py - radius, px + radius, py + radius) for px, py in pixels]
    # the most crowded points first (neighbours within 60 px, L1): the fewest free positions
    crowd = [int((abs(pixels - q).sum(axis=1) < 60).sum()) for q in pixels]
    candidates = [(*c, False) for c in _NEAR] + [(*c, True) for c in _FAR]

    def put(x, y, text, dx, dy, ha, far):
        label = ax.annotate(
            text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha,
            fontsize=fontsize, color="0.3",
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if far else None)
        return label, _text_box(label, renderer)

    labels = []
    for i in sorted(range(len(points)), key=lambda i: -crowd[i]):
        x, y, text = points[i]
        for candidate in candidates:
            label, box = put(x, y, text, *candidate)
            if _contains(inside, box) and not any(box.overlaps(t) for t in taken):
                break
            label.remove()
        else:  # fits nowhere: the nearest position
            label, box = put(x, y, text, *candidates[0])
        taken.append(box)
        labels.append(label)
    return labels


def _text_box(label, renderer):
    """The box of a label's text alone (an annotation's own extent includes its leader line)."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def _box(x0: float, y0: float, x1: float, y1: float):
    from matplotlib.transforms import Bbox

    return Bbox([[x0, y0], [x1, y1]])


def _contains(outer, box) -> bool:
    return (box.x0 >= outer.x0 and box.x1 <= outer.x1 and box.y0 >= outer.y0
            and box.y1 <= outer.y1)


def write_front_plot(front: dict, path: str | Path) -> Path | None:
    """The two-panel figure of a `variant tune` front; None when matplotlib is missing."""
    plt = pyplot(path)
    if plt is None:
        return None
    meta, rows = front["meta"], front["rows"]
    key = meta["metric_key"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    panels = [("latency", "total_s", f"seconds per batch of {meta['bench_batch']} "
               f"({meta['device_name']}, {meta['threads']} threads)", 1.0),
              ("kv", "kv_peak_bytes", "peak KV cache (MiB)", 1 / 2**20)]
    panel_points = []
    for ax, (axis, cost_key, xlabel, scale) in zip(axes, panels):
        points = []
        for fam in families():
            mine = [r for r in rows if r["family"] == fam and r["quality"][key]["mean"] is not None
                    and r["cost"].get(cost_key) is not None]
            if not mine:
                continue
            color, marker = style(fam)
            xs = [r["cost"][cost_key] * scale for r in mine]
            ys = [r["quality"][key]["mean"] for r in mine]
            yerr = [[y - _or(r["quality"][key]["low"], y) for y, r in zip(ys, mine)],
                    [_or(r["quality"][key]["high"], y) - y for y, r in zip(ys, mine)]]
            xerr = None
            if axis == "latency":
                xerr = [[x - r["cost"]["total_q1_s"] for x, r in zip(xs, mine)],
                        [r["cost"]["total_q3_s"] - x for x, r in zip(xs, mine)]]
            ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, fmt=marker, color=color, label=fam,
                        markersize=MARKER_SIZE, capsize=3, linestyle="none")
            points += [(x, y, r["spec"]) for x, y, r in zip(xs, ys, mine)]
        on = sorted((r["cost"][cost_key] * scale, r["quality"][key]["mean"]) for r in rows
                    if r["on_front"].get(axis) and r["cost"].get(cost_key) is not None)
        if on:
            ax.step([p[0] for p in on], [p[1] for p in on], where="post", color="0.5",
                    linestyle="--", linewidth=1, label="front", zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{key.upper() if key == 'fid' else key} (mean over {len(meta['seeds'])} "
                      "seeds, 95% interval)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        panel_points.append(points)
    handles, names = axes[0].get_legend_handles_labels()  # one legend, below both panels
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle(f"{meta['model']}: {meta['metric']} {key}, {meta['num_per_class']} images per "
                 f"class x {meta['num_classes']} classes per seed; lower is better" if key == "fid"
                 else f"{meta['model']}: {key}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # the final layout first: labels are placed in it
    for ax, points in zip(axes, panel_points):
        place_labels(ax, points)
    return save_figure(fig, plt, path, dpi=130, layout=False)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
