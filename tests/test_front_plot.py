"""front.png's label placement: every point labelled, no label over another label or a marker."""

import itertools
import json
from pathlib import Path

import pytest

plt = pytest.importorskip("matplotlib.pyplot")
Text = pytest.importorskip("matplotlib.text").Text

from variant.front.plot import place_labels, write_front_plot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _crowded_points():
    # a tight cluster (as the full-network levers are in the shipped front) and a spread
    cluster = [(0.31 + 0.004 * i, 4.5 + 0.05 * (i % 3), f"full+lever{i}") for i in range(6)]
    spread = [(0.2 + 0.03 * i, 6 + (i % 4), f"d{i}+cfgstop4+prune0.5@4") for i in range(6)]
    return cluster + spread


def test_labels_overlap_neither_each_other_nor_markers():
    fig, ax = plt.subplots(figsize=(6, 5))
    points = _crowded_points()
    ax.plot([p[0] for p in points], [p[1] for p in points], "o", linestyle="none")
    ax.margins(x=0.12, y=0.08)
    labels = place_labels(ax, points)
    renderer = fig.canvas.get_renderer()
    assert sorted(label.get_text() for label in labels) == sorted(p[2] for p in points)
    boxes = []
    for label in labels:  # the text's own box, without the leader line of a far label
        label.update_positions(renderer)
        boxes.append(Text.get_window_extent(label, renderer))
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    frame = ax.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1
    for x, y, _ in points:  # no label covers a marker's centre
        px, py = ax.transData.transform((x, y))
        assert not any(b.contains(px, py) for b in boxes)
    plt.close(fig)


def test_a_label_that_fits_nowhere_is_still_drawn():
    fig, ax = plt.subplots(figsize=(2, 2))
    points = [(0.5, 0.5 + 0.001 * i, f"configuration-{i}") for i in range(12)]
    ax.plot([p[0] for p in points], [p[1] for p in points], "o")
    labels = place_labels(ax, points)
    assert len(labels) == len(points)
    plt.close(fig)


def test_shipped_front_figure_has_every_spec_once(tmp_path, monkeypatch):
    front = json.loads((ROOT / "docs/reproduction/front/front.json").read_text())
    drawn = []
    real = place_labels

    def recording(ax, points, **kw):
        labels = real(ax, points, **kw)
        drawn.append(sorted(label.get_text() for label in labels))
        return labels

    monkeypatch.setattr("variant.front.plot.place_labels", recording)
    path = write_front_plot(front, tmp_path / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    specs = sorted(r["spec"] for r in front["rows"])
    assert drawn == [specs, specs]  # both panels, every configuration labelled once


def test_every_declared_family_has_its_own_style_and_plots(tmp_path):
    from variant.front.plot import STYLE, style
    from variant.front.tune import families

    styles = [style(f) for f in families()]
    assert len(set(styles)) == len(styles)  # precision levers too: no two families alike
    assert style("depth") == STYLE["depth"]
    front = json.loads((ROOT / "docs/reproduction/front/front.json").read_text())
    for row, family in zip(front["rows"][:2], ("KV precision", "weight precision")):
        row["family"] = family
    assert write_front_plot(front, tmp_path / "front.png").stat().st_size > 1000
