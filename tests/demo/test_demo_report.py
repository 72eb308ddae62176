"""The demo's report: tables from step outputs (the pipeline itself is run by `variant demo`)."""

import json

import pytest

from variant.demo import DEMO_MODES, Demo
from variant.demo.report import (
    mean_interval,
    plot_study,
    study_differences,
    study_table,
    write_report,
)


def _eval_json(path, fids):
    rows = [{"plan": plan, "num_images": 10, "flops_ratio": 1.0, "fid": fid,
             "class_accuracy": 0.5} for plan, fid in fids.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": {}, "rows": rows}))
    return path


def test_mean_interval():
    half = 4.303 * 1.0 / 3 ** 0.5  # t(0.975, 2 degrees of freedom) * sd / sqrt(n), by hand
    assert mean_interval([1.0, 2.0, 3.0]) == f"2.000 ({2 - half:.3f}–{2 + half:.3f})"
    assert mean_interval([4.0]) == "4.000"
    assert mean_interval([None]) == "—"


def test_study_table_aggregates_seeds(tmp_path):
    study = {
        "fixed:0.1": [_eval_json(tmp_path / f"a{s}.json", {"full": 1.0 + s, "d2": 5.0})
                      for s in range(3)],
        "progressive": [_eval_json(tmp_path / f"b{s}.json", {"full": 2.0, "d2": 3.0 + s})
                        for s in range(3)],
    }
    table = study_table(study, "fid")
    half = 4.303 / 3 ** 0.5
    assert "| ratio schedule (3 seeds) | full | d2 |" in table
    assert (f"| fixed:0.1 | 2.000 ({2 - half:.3f}–{2 + half:.3f}) | 5.000 (5.000–5.000) |"
            in table)
    assert (f"| progressive | 2.000 (2.000–2.000) | 4.000 ({4 - half:.3f}–{4 + half:.3f}) |"
            in table)


def test_study_differences_against_progressive_by_hand(tmp_path):
    study = {
        "fixed:0.1": [_eval_json(tmp_path / f"a{s}.json", {"full": 1.0 + s, "d4": 10.0 + s,
                                                           "d2": 5.0}) for s in range(3)],
        "progressive": [_eval_json(tmp_path / f"b{s}.json", {"full": 2.0, "d4": 1.0 + s,
                                                             "d2": 3.0 + s}) for s in range(3)],
    }
    table = study_differences(study, "fid")
    # full and d2: one side has no spread, so Welch has 2 degrees of freedom (t 4.303) and a
    # standard error of sqrt(1/3); d4: equal spreads, 4 degrees of freedom (t 2.776)
    h2 = 4.303 * (1 / 3) ** 0.5
    h4 = 2.776 * (2 / 3) ** 0.5
    assert table.splitlines()[0] == "| fid: schedule − progressive | full | d4 | d2 |"
    assert table.splitlines()[2] == (
        f"| fixed:0.1 | +0.000 ({-h2:+.3f} to {h2:+.3f}) | +9.000 ({9 - h4:+.3f} to "
        f"{9 + h4:+.3f}) ★ | +1.000 ({1 - h2:+.3f} to {1 + h2:+.3f}) |")
    assert len(table.splitlines()) == 3  # no row for the reference itself
    assert study_differences({"fixed:0.1": study["fixed:0.1"]}, "fid") == ""


def test_study_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    study = {ratio: [_eval_json(tmp_path / f"{ratio}{s}.json",
                                {"full": 1.0 + s + i, "d4": 2.0 + s, "d2": 5.0 - i})
                     for s in range(3)] for i, ratio in enumerate(("fixed:0.1", "progressive"))}
    path = plot_study(study, tmp_path / "study.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_are_recorded_and_skipped_when_done(tmp_path):
    demo = Demo(tmp_path, DEMO_MODES["quick"])
    done = tmp_path / "exists"
    done.write_text("")
    demo.variant("plan", "--depth", "8", done=done)  # skipped: nothing recorded
    assert not demo.log_path.exists() and (demo.ran, demo.skipped) == (0, 1)
    demo.variant("plan", "--depth", "8", "--subnets", "4", "2")
    assert (demo.ran, demo.skipped) == (1, 1)
    entry = json.loads(demo.log_path.read_text().splitlines()[0])
    assert entry["command"] == "variant plan --depth 8 --subnets 4 2"
    assert entry["returncode"] == 0
    assert "| d4 |" in (tmp_path / "logs" / entry["log"]).read_text()


def test_report_is_written(tmp_path):
    demo = Demo(tmp_path, DEMO_MODES["quick"])
    for cmd in ("train-tokenizer", "bench", "analyze asymmetry"):
        log = tmp_path / "logs" / f"{cmd.replace(' ', '-')}.log"
        log.write_text(f"| table of {cmd} |\n--- stderr ---\n")
        with demo.log_path.open("a") as f:
            f.write(json.dumps({"command": f"variant {cmd} --x", "seconds": 1.0,
                                "returncode": 0, "log": log.name}) + "\n")
    evals = {"supernet": _eval_json(tmp_path / "e.json", {"full": 1.0, "d4/bridge4": 2.0})}
    report = write_report(tmp_path, "quick", tmp_path, evals, tmp_path / "b.json",
                          tmp_path / "a.json", [tmp_path / "samples-full.png"], {}, 60.0,
                          steps=(12, 0))
    text = report.read_text()
    assert "Total wall time of this run: 1.0 min (all 12 steps ran)." in text
    assert "| table of bench |" in text and "| table of analyze asymmetry |" in text
    assert "## Quality: supernet" in text and "d4/bridge4" in text
    assert "![samples-full](samples-full.png)" in text
    assert "`variant bench --x`" in text


def _front_json(path, specs):
    rows = []
    for i, spec in enumerate(specs):
        rows.append({"spec": spec, "family": "depth", "plan": spec,
                     "quality": {"fid": {"mean": 5.0 + i, "low": 4.0 + i, "high": 6.0 + i}},
                     "cost": {"total_s": 1.0 - 0.1 * i, "kv_peak_bytes": 2**20 * (3 - i),
                              "peak_memory_bytes": None, "gflops_per_image": 1.0 - 0.2 * i},
                     "on_front": {"latency": True, "kv": i == 0}})
    meta = {"metric_key": "fid", "interval": "95% Student-t over seeds", "num_per_class": 50,
            "num_classes": 10, "seeds": [0, 1, 2, 3, 4]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": "variant-front", "meta": meta, "rows": rows}))
    return path


def test_report_has_the_front_and_the_asymmetry_after_training(tmp_path):
    demo = Demo(tmp_path, DEMO_MODES["quick"])
    demo.log_path.write_text("")
    evals = {"supernet": _eval_json(tmp_path / "e.json", {"full": 1.0})}
    fronts = {"front": _front_json(tmp_path / "front" / "front.json", ["full", "d2+cfgstop4"]),
              "asymmetry-supernet": _front_json(tmp_path / "asym" / "front.json",
                                                ["full", "d4@r6"])}
    report = write_report(tmp_path, "full", tmp_path, evals, tmp_path / "b.json",
                          tmp_path / "a.json", [], {}, 6.0, fronts, steps=(0, 40))
    text = report.read_text()
    assert ("Wall time of this invocation: 0.1 min; it ran 0 steps and skipped 40 that an "
            "earlier invocation had done, so it is not the pipeline's total") in text
    front_part = text.split("## Measured front of the supernet")[1].split("## ")[0]
    assert "seeds [0, 1, 2, 3, 4]" in front_part and "![front](front/front.png)" in front_part
    # rows sorted by latency: the cheaper d2+cfgstop4 first, with its interval
    assert front_part.index("| d2+cfgstop4 |") < front_part.index("| full |")
    assert "| 6.00 (5.00–7.00) |" in front_part
    asym_part = text.split("## Scale-depth asymmetry after supernet training")[1]
    assert "| d4@r6 |" in asym_part and "r6 = the last scale alone" in text


def test_demo_modes_meet_the_sharper_study():
    full = DEMO_MODES["full"]
    assert len(full.seeds) >= 5 and full.study_per_class * 10 >= 500
    assert len(full.tune_seeds) >= 5 and full.tune_per_class * 10 >= 500
