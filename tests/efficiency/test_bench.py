import json

import pytest

from variant.cli.main import main
from variant.efficiency.bench import BenchSettings, compare_to_full, spread
from variant.sampling.settings import SamplingConfig
from variant.units import fmt_bytes


def _bench(tmp_path, *extra):
    argv = ["bench", "--model", "random:tiny", "--batch", "2", "--warmup", "0", "--repeats", "1",
            "--threads", "1", "--json", str(tmp_path / "bench.json"), *extra]
    assert main(argv) == 0
    return json.loads((tmp_path / "bench.json").read_text())


def test_bench_json_table_profile_in_process(tmp_path, capsys):
    data = _bench(tmp_path, "--plans", "full", "d2", "--isolate", "no",
                  "--profile", str(tmp_path / "profile.json"), "--plot", str(tmp_path / "b.png"))
    out = capsys.readouterr().out
    assert "batch 2 images (cfg 1.5: CFG doubles the batch to 4 rows)" in out
    assert "| full |" in out and "| d2 |" in out
    assert "matches the cache for every plan" in out
    full, sub = data["rows"]
    for row in (full, sub):
        for key in ("transformer", "decoder", "total"):
            assert set(row[key]) == {"median", "q1", "q3", "min", "max", "n"}
            assert row[key]["n"] == 1 and row[key]["median"] > 0
        assert row["images_per_s"] > 0 and row["gflops_per_image"] > 0
        assert row["kv_peak_bytes"] == row["kv_predicted_bytes"]
        assert row["peak_memory_bytes"] is None  # CPU, shared process: not measurable
    # tiny: D=4, scales (1, 2, 4); full keeps 36 token-layers, d2 26; 4 rows x 64 x 4 B x 2
    assert full["kv_peak_bytes"] == 36 * 2048 and sub["kv_peak_bytes"] == 26 * 2048
    assert full["speedup"] == 1.0 and sub["kv_saving"] == pytest.approx(1 - 26 / 36)
    assert sub["flop_speedup"] > 1
    assert data["meta"]["settings"]["batch"] == 2 and data["meta"]["isolated"] is False
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["rows"] == 4 and len(profile["scales"]) == 3
    assert profile["decoder_seconds"] > 0
    assert all(s["seconds_per_layer"] > 0 for s in profile["scales"])


def test_bench_isolated_worker_reports_peak_rss(tmp_path, capsys):
    data = _bench(tmp_path, "--plans", "full", "--isolate", "yes", "--cfg", "0")
    (row,) = data["rows"]
    assert row["memory_kind"] == "peak RSS (fresh process)"
    assert 20 * 2**20 < row["peak_memory_bytes"] < 4 * 2**30
    assert row["rss_after_load_bytes"] <= row["peak_memory_bytes"]
    assert "no CFG: batch not doubled" in capsys.readouterr().out
    assert row["kv_peak_bytes"] == 36 * 1024  # 2 rows without CFG


def test_spread_and_settings():
    s = spread([3.0, 1.0, 2.0, 4.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["q1"] == 1.75 and s["q3"] == 3.25
    assert spread([5.0])["q1"] == 5.0
    assert BenchSettings(batch=3).rows == 6  # the official cfg 1.5 doubles the batch
    assert BenchSettings(batch=3, sampling=SamplingConfig(cfg=0)).rows == 3
    with pytest.raises(ValueError, match="timed runs >= 1"):
        BenchSettings(repeats=0)
    assert fmt_bytes(36 * 1024) == "36.0 KiB" and fmt_bytes(17179869184) == "16.0 GiB"
    assert fmt_bytes(999) == "999 B" and fmt_bytes(1000) == "0.98 KiB"
    assert fmt_bytes(int(6.45 * 2**30)) == "6.45 GiB" and fmt_bytes(272 * 2**20) == "272 MiB"
    assert fmt_bytes(None) == "—"


def test_compare_to_full_without_full_row():
    row = {"plan": "d2", "total": {"median": 1.0}, "transformer": {"median": 1.0},
           "flops": 1, "kv_peak_bytes": 1, "peak_memory_bytes": None}
    (out,) = compare_to_full([row])
    assert out["speedup"] is None and out["memory_saving"] is None
