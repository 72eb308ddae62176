"""The plan study's tables (demo/plans_report.py) on hand-made fronts, and its commands."""

import json

import pytest

from variant.analysis.stats import interval
from variant.demo import DEMO_MODES, Demo
from variant.demo.plans import ZONE_NAMES, ZONE_SPECS, zone_supernets
from variant.demo.plans_report import (
    dominance_table,
    own_zone_differences,
    own_zone_table,
    write_plans_report,
    zone_table,
)

FLOPS = {"full": 100.0, "d4@r1-r2": 98.0, "d2@r1-r2": 97.0, "d4@r3-r4": 90.0,
         "d2@r3-r4": 85.0, "d4@r5-r6": 60.0, "d2@r5-r6": 40.0}


def _row(spec, fids, flops=None, kv=1 << 20):
    iv = interval(fids)
    flops = FLOPS[spec] if flops is None else flops
    return {"spec": spec, "quality": {"fid": iv},
            "cost": {"flops": flops, "gflops_per_image": flops / 1e3, "kv_predicted_bytes": kv}}


def _front(path, rows):
    path.write_text(json.dumps({"rows": rows}))
    return path


def _zones(tmp_path):
    """Zone z's run r: full FID 1 + r, every subnet 2 + r, the own zone's d4 worse by z + 1."""
    fronts = {}
    for z, zone in enumerate(("1-2", "3-4", "5-6")):
        for r in range(3):
            rows = [_row(spec, [(1.0 if spec == "full" else 2.0) + r
                                + (z + 1) * (spec == f"d4@r{zone.replace('-', '-r')}")])
                    for spec in ZONE_SPECS]
            fronts.setdefault(zone, []).append(_front(tmp_path / f"{zone}-{r}.json", rows))
    return fronts


def test_zone_tables_by_hand(tmp_path):
    fronts = _zones(tmp_path)
    table = zone_table(fronts, ZONE_NAMES)
    half = 4.303 / 3 ** 0.5  # t(2 df) * sd 1 / sqrt(3)
    assert f"| early (scales 1-2) | 2.00 ({2 - half:.2f} to {2 + half:.2f}) |" in table
    own = own_zone_table(fronts, ZONE_NAMES)
    # own-zone d4 damage: 1 + (z + 1) in every run, no spread; saving 2 %, 10 %, 40 %
    assert ("| early (scales 1-2) | d4@r1-r2 | 2.0% | +2.00 (+2.00 to +2.00) | "
            "+1.000 (+1.000 to +1.000) |") in own
    assert "| late (scales 5-6) | d4@r5-r6 | 40.0% | +4.00 (+4.00 to +4.00) | +0.100" in own
    assert "| middle (scales 3-4) | d2@r3-r4 | 15.0% | +1.00 (+1.00 to +1.00) | +0.067" in own
    diffs = own_zone_differences(fronts, ZONE_NAMES)
    assert "| d4 | early − late | -2.00 |" in diffs  # no spread on either side: no interval


def test_dominance_finds_the_best_plan_at_no_more_cost(tmp_path):
    paper = _front(tmp_path / "paper.json", [
        _row("full", [4.0, 4.2, 4.4], 100.0, 4 << 20), _row("d4", [6.0, 6.5, 7.0], 60.0, 3 << 20),
        _row("d2", [9.0, 9.5, 10.0], 40.0, 2 << 20)])
    search = _front(tmp_path / "search.json", [
        _row("d8.8.8.4.4.2", [5.0, 5.1, 5.2], 55.0, 3 << 20),  # cheaper and better than d4
        _row("d8.8.4.4.4.4", [1.0, 1.0, 1.1], 61.0, 3 << 20),  # better but costs more
        _row("d8.4.2.2.2.2", [9.2, 9.6, 10.1], 30.0, 1 << 20)])
    table = dominance_table(search, paper).splitlines()
    d4 = next(line for line in table if line.startswith("| d4 |"))
    assert "d8.8.8.4.4.2 (0.055 GFLOPs, 3.0 MiB)" in d4 and d4.endswith("★ |")
    assert "-1.40" in d4  # 5.1 - 6.5
    d2 = next(line for line in table if line.startswith("| d2 |"))
    assert "d8.4.2.2.2.2" in d2 and "★" not in d2


def test_report_writes_tables_and_figures(tmp_path):
    pytest.importorskip("matplotlib")
    fronts = _zones(tmp_path)
    paper = _front(tmp_path / "paper.json", [_row("full", [4.0, 4.1], 100.0),
                                             _row("d4", [6.0, 6.4], 60.0),
                                             _row("d2", [9.0, 9.4], 40.0),
                                             _row("d8.8.8.4.4.2", [7.0, 7.1], 50.0)])
    search = _front(tmp_path / "search.json", [_row("full", [4.2, 4.3], 100.0),
                                               _row("d8.8.8.4.4.2", [6.0, 6.1], 50.0)])
    report = write_plans_report(tmp_path, fronts, search, paper, ZONE_NAMES, 60.0, (3, 1))
    text = report.read_text()
    assert "## Each supernet's subnets on its own zone" in text
    assert "| d8.8.8.4.4.2 | 0.050 | 6.05" in text
    for name in ("zones.png", "search.png", "depths.png"):
        assert (tmp_path / "plans" / name).stat().st_size > 1000


def test_zone_supernets_differ_only_in_their_zone(tmp_path, monkeypatch):
    demo = Demo(tmp_path, DEMO_MODES["plans"], jobs=1)
    commands = []
    monkeypatch.setattr(demo, "variant", lambda *args, **kw: commands.append(args))
    models = zone_supernets(demo, tmp_path / "base", DEMO_MODES["plans"].plans)
    assert list(models) == ["1-2", "3-4", "5-6"] and all(len(m) == 3 for m in models.values())
    assert len(commands) == 9
    stripped = {tuple(str(a) for a in c if "zone" not in str(a)) for c in commands}
    assert len(stripped) == 3  # the same command but for the zone, once per training seed
    assert {c[c.index("--plan-family") + 1] for c in commands} == {
        "zone:1-2", "zone:3-4", "zone:5-6"}
