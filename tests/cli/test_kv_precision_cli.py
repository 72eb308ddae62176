"""KV precision on the command line: `variant sample` with it in the spec or as a flag measures
the KV its prediction says, `variant plan` prints its bytes, `--help` shows the syntax."""

import json

import pytest

from variant.cli.main import main
from variant.config import PATCH_NUMS_256, VARConfig
from variant.models.cost import CostModel
from variant.sampling.configuration import Configuration
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("argv, dtype", [(["--plan", "d4+kv8"], "fp32"),
                                         (["--plan", "d4", "--kv-precision", "fp8@3"], "bf16")])
def test_sample_measures_the_predicted_kv(argv, dtype, tmp_path):
    def sample(name, *more):
        report = tmp_path / f"{name}.json"
        assert main(["sample", "--num", "2", "--seed", "1", "--dtype", dtype, "--out",
                     str(tmp_path / f"{name}.png"), "--json", str(report), *more]) == 0
        return json.loads(report.read_text())

    quantised, plain = sample("kv", *argv), sample("plain", "--plan", "d4")
    assert quantised["settings"]["kv_precision"] in ("int8", "fp8@3")
    assert quantised["kv_peak_bytes"] == quantised["predicted_kv_peak_bytes"]
    assert quantised["kv_peak_bytes"] < plain["kv_peak_bytes"]


def test_plan_prints_the_kv_bytes_of_each_precision(tmp_path, capsys):
    """The built-in model at batch 2 under guidance (4 rows), fp32: 2424832 B plain; int8 keys
    and values with float32 scales per (token, head) 4 x (7 x 66 x 288 + 130 x 1024) B
    (tests/sampling/test_kv_precision.py counts them by hand)."""
    rows_json = tmp_path / "rows.json"
    assert main(["plan", "--plans", "full", "full+kv8", "full+kvfp8@2", "--batch", "2",
                 "--dtype", "fp32", "--json", str(rows_json)]) == 0
    out = capsys.readouterr().out
    assert "| full+kv8 |" in out and "| full+kvfp8@2 |" in out
    rows = {r["plan"]: r for r in json.loads(rows_json.read_text())["rows"]}
    assert rows["full"]["kv_peak_bytes"] == 2424832
    assert rows["full+kv8"]["kv_peak_bytes"] == 4 * (7 * 66 * 288 + 130 * 1024)
    assert rows["full+kv8"]["kv_peak_bytes"] < rows["full+kvfp8@2"]["kv_peak_bytes"] < 2424832


def test_help_shows_the_flag_and_the_spec_parts(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--kv-precision FORMAT[@SCALE]" in text
    assert "spec kv8, kvfp8, kv8@5 (not kvFIRST,RECENT, which is KV retention)" in text


def test_the_budget_planner_picks_int8_kv_when_it_is_what_fits(tmp_path, capsys):
    """VAR-d16 shape, batch 64 with guidance, bf16: the full network's KV (3.44 GiB) is over a
    3 GiB KV budget, its int8 KV (1.98 GiB) within: the planner picks full+kv8 over a subnet,
    and its predicted KV is the configuration's own (the cost model on `full+kv8`)."""

    out_json = tmp_path / "choice.json"
    assert main(["plan", "--depth", "16", "--batch", "64", "--max-kv", "3GiB",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "chosen plan: full+kv8 (all 16 layers at every scale" in out
    assert "KV cache in int8 with float32 scales" in out
    assert "the next deeper plan, full, needs KV 3.44 GiB > 3.00 GiB" in out
    assert "--plans full+kv8 " in out.splitlines()[-1]
    chosen = json.loads(out_json.read_text())["chosen"]
    assert chosen["spec"] == "full+kv8" and chosen["kv_precision"] == "int8"
    config_ = VARConfig(depth=16, embed_dim=1024, num_heads=16, patch_nums=PATCH_NUMS_256)
    resolved = Configuration.resolve("full+kv8", 16, PATCH_NUMS_256, SamplingConfig())
    cost = CostModel(config_, "bf16", rows=128)
    assert chosen["kv_bytes"] == cost.kv_peak_bytes(resolved.plan, resolved.levers)
    assert chosen["kv_bytes"] < cost.kv_peak_bytes(resolved.plan) <= 3.44 * 2**30
