import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from variant import DepthPlan, load_model
from variant.cli.main import main


def test_every_subcommand_has_help(capsys):
    from variant.cli.main import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: variant" in capsys.readouterr().out


def test_plan_prints_paper_table_and_nesting_note(capsys, tmp_path):
    assert main(["plan", "--depth", "30", "--batch", "64", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "| d16 | 12154 | 0.596 |" in out
    assert "I_8 is not a subset of I_16" in out
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    ratios = [round(r["kv_vs_official_tokens"], 3) for r in rows]
    assert ratios == [0.636, 0.345, 0.179, 0.096, 0.084]
    # the cache's dry run measures exactly the bound for every paper plan at D=30
    assert all(r["kv_measured_token_layers"] == r["kv_peak_token_layers"] for r in rows)
    assert out.count("| = bound |") == 5


def test_sample_writes_grid_each_and_npz(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["sample", "--model", "random:tiny", "--labels", "1", "2", "3", "--plan", "d2",
                 "--out", str(out), "--save-each", str(tmp_path / "each"),
                 "--npz", str(tmp_path / "s.npz"), "--seed", "5"])
    assert code == 0
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 3 and grid.shape[2] == 3
    assert len(list((tmp_path / "each").glob("*.png"))) == 3
    npz = np.load(tmp_path / "s.npz")
    assert npz["arr_0"].shape == (3, 8, 8, 3) and npz["arr_0"].dtype == np.uint8
    assert npz["arr_1"].tolist() == [1, 2, 3]
    assert "peak KV cache" in capsys.readouterr().out


def test_sample_json_reports_measured_and_predicted_costs(tmp_path):
    """--json: the cache's peak equals the cost model's prediction, and indices_sha256 hashes
    the same tokens the Python API draws for the same seed (two chunks: seeds 5 and 6)."""
    report = tmp_path / "run.json"
    assert main(["sample", "--model", "random:tiny", "--labels", "1", "2", "3", "--plan", "d2",
                 "--batch-size", "2", "--seed", "5", "--out", str(tmp_path / "g.png"),
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    for key in ("kv_peak_bytes", "predicted_kv_peak_bytes", "token_layers", "gflops",
                "transformer_s", "decoder_s", "indices_sha256"):
        assert key in data, key
    assert data["kv_peak_bytes"] == data["predicted_kv_peak_bytes"] == 26 * 4 * 64 * 4 * 2
    assert data["token_layers"] == 1 * 4 + 4 * 4 + 16 * 2  # tiny d2: 4, 4 and 2 layers per scale
    var, _ = load_model("random:tiny", seed=5)  # --seed also seeds random:PRESET weights
    plan = DepthPlan.from_spec("d2", var.depth, var.num_scales)
    a = var.generate(2, [1, 2], seed=5, plan=plan).indices
    b = var.generate(1, [3], seed=6, plan=plan).indices
    digest = hashlib.sha256()
    for k in range(var.num_scales):
        digest.update(torch.cat([a[k], b[k]]).to(torch.int64).numpy().tobytes())
    assert data["indices_sha256"] == digest.hexdigest()


@pytest.mark.parametrize("argv, message", [
    (["--labels", "3", "99"], "--labels must be in 0..9"),
    (["--num", "0"], "argument --num: expected a whole number >= 1"),
    (["--out", "/proc/forbidden/x.png"], "cannot write"),
    (["--plan", "d9"], "subnet_depth must be in 1..4"),
])
def test_sample_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    args = ["sample", "--model", "random:tiny", "--out", str(tmp_path / "g.png"), *argv]
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse refuses the value before the command runs
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_entry_point_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "variant", "plan", "--depth", "16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| d8 |" in proc.stdout


def test_plan_without_arguments_describes_the_model_sample_runs(capsys):
    """`variant plan` alone costs what `variant sample` alone samples: the built-in model, at
    the sampling dtype, with guidance (issue 18); --depth gives an official shape instead."""
    from variant.sampling.settings import SamplingConfig

    assert main(["plan"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith("model builtin: VAR depth 8, width 128, 6 scales")
    assert f"KV in {SamplingConfig().dtype}" in head and "CFG doubles the batch" in head
    assert main(["plan", "--depth", "30"]) == 0
    assert capsys.readouterr().out.startswith("VAR depth 30, width 1920, 10 scales")
    assert main(["plan", "--model", "builtin", "--depth", "8"]) == 2
    assert "drop --depth" in capsys.readouterr().err
