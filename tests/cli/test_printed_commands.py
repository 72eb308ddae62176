"""Printed commands are true (issue 18): the `variant sample` line of `variant plan --front` and
the `variant bench` line of the budget planner, run as printed, measure the KV that was printed
for them, with the settings it was computed for; a front is checked against the model given."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
from pathlib import Path

import pytest

from variant.cli.main import main
from variant.front import front_options, load_front
from variant.units import fmt_bytes

FRONT = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "front" / "front.json"


def _run(argv: list[str]) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
    return code, out.getvalue(), err.getvalue()


def _printed(stdout: str, prefix: str) -> list[str]:
    line = next(x for x in stdout.splitlines() if x.strip().startswith(prefix))
    return shlex.split(line.strip()[line.strip().index("variant"):])


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("batch", [2, 3])
def test_plan_front_command_holds_the_printed_kv_and_settings(batch, tmp_path):
    code, stdout, err = _run(["plan", "--front", str(FRONT), "--max-kv", "1MiB",
                              "--batch", str(batch)])
    assert code == 0, err
    command = _printed(stdout, "variant sample")
    chosen = stdout.split("best within budget: ")[1].split(" |")[0]
    front = load_front(FRONT)
    option = next(o for o in front_options(front, batch) if o.spec == chosen)
    assert f"KV {fmt_bytes(option.costs['kv'])}" in stdout
    report = tmp_path / "run.json"
    code, _, err = _run(command[1:] + ["--out", str(tmp_path / "g.png"), "--json", str(report)])
    assert code == 0, err
    run = json.loads(report.read_text())
    assert run["configuration"] == chosen
    assert run["num_images"] == run["batch_size"] == batch
    assert run["kv_peak_bytes"] == option.costs["kv"]  # measured = printed, exactly
    measured_with = {k: v for k, v in front["meta"]["settings"].items() if k != "seed"}
    assert {k: run["settings"][k] for k in measured_with} == measured_with


@pytest.mark.usefixtures("one_thread")
def test_budget_planner_confirm_command_measures_the_predicted_kv(tmp_path):
    code, stdout, err = _run(["plan", "--max-kv", "1MiB", "--batch", "2"])
    assert code == 0, err
    predicted = stdout.split("predicted KV cache:")[1].split("\n")[0].strip()
    command = _printed(stdout, "confirm with:")
    assert command[:4] == ["variant", "bench", "--model", "builtin"]
    report = tmp_path / "bench.json"
    code, _, err = _run(command[1:] + ["--repeats", "1", "--warmup", "0", "--isolate", "no",
                                       "--json", str(report)])
    assert code == 0, err
    (row,) = json.loads(report.read_text())["rows"]
    assert fmt_bytes(row["kv_peak_bytes"]) == predicted
    assert row["kv_peak_bytes"] == row["kv_predicted_bytes"]


@pytest.mark.parametrize("flags, named", [
    (["--dtype", "bf16"], "--dtype"), (["--no-cfg"], "--no-cfg"), (["--depth", "30"], "--depth"),
    (["--subnets", "4"], "--subnets"), (["--layers"], "--layers"),
    (["--allow-other-model"], "--model"),
])
def test_plan_front_refuses_flags_that_do_not_apply(flags, named):
    code, _, err = _run(["plan", "--front", str(FRONT), "--max-kv", "1MiB", *flags])
    assert code == 2 and named in err and "Traceback" not in err


def _front_with(tmp_path, **meta) -> str:
    front = json.loads(FRONT.read_text())
    front["meta"].update(meta)
    path = tmp_path / "front.json"
    path.write_text(json.dumps(front))
    return str(path)


def test_plan_front_is_checked_against_the_model_given(tmp_path):
    args = ["--max-kv", "1MiB", "--model"]
    code, _, err = _run(["plan", "--front", str(FRONT), *args, "random:tiny"])
    assert code == 2 and "another architecture" in err  # depth 4 vs the front's 8
    other = _front_with(tmp_path, weights_sha256="0" * 64)
    code, _, err = _run(["plan", "--front", other, *args, "builtin"])
    assert code == 2 and "other weights" in err and "--allow-other-model" in err
    code, stdout, err = _run(["plan", "--front", other, *args, "builtin", "--allow-other-model"])
    assert code == 0 and "measured on other weights" in stdout, err
    code, stdout, err = _run(["plan", "--front", str(FRONT), *args, "builtin"])
    assert code == 0 and "predates weights fingerprints" in stdout, err  # committed: older


def test_plan_front_accepts_its_own_weights(tmp_path):
    from variant import load_model
    from variant.weights import weights_sha256

    var, vae = load_model("builtin")
    mine = _front_with(tmp_path, weights_sha256=weights_sha256(var, vae))
    code, stdout, err = _run(["plan", "--front", mine, "--max-kv", "1MiB", "--model", "builtin"])
    assert code == 0, err
    assert "note:" not in stdout
