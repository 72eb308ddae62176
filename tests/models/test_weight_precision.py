"""Quantised weights (variant/precision.py, the `weights` lever): which layers, how close, saved
and loaded, refused where unsupported, flowing like a lever, and in the memory planner."""

import json
import shlex

import pytest
import torch

import variant
from variant import precision
from variant.cli.common import sampling_from_args
from variant.cli.main import build_parser, main
from variant.config import model_preset
from variant.efficiency.budget import (
    Predictor,
    Workload,
    candidate_plans,
    model_bytes,
    predicted_options,
)
from variant.efficiency.choice import Budget, choose
from variant.front import tune
from variant.models.cost import CostModel
from variant.sampling.configuration import Configuration, parse_configuration
from variant.sampling.settings import SamplingConfig

pytest.importorskip("torchao", reason="torchao is not installed (pip install 'variant[quant]')")

LABELS = [0, 3, 5, 7]


@pytest.fixture(scope="module")
def builtin_int8():
    return variant.load_model("builtin", weights="int8")


def _logits(var, seed=0):
    """Teacher-forced logits of the full plan on a seeded random token sequence."""
    g = torch.Generator().manual_seed(seed)
    idx = [torch.randint(var.V, (len(LABELS), p * p), generator=g) for p in var.patch_nums]
    with torch.no_grad():
        x = var.vae.idxBl_to_var_input(idx)
        return var(torch.tensor(LABELS), x)


def test_the_block_linears_are_quantised_and_nothing_else(builtin_int8):
    var, _ = builtin_int8
    kinds = {n: type(m.weight).__name__ for n, m in var.named_modules()
             if isinstance(m, torch.nn.Linear)}
    quantised = sorted(n for n, k in kinds.items() if k == "Int8Tensor")
    # 5 per block: attn.mat_qkv, attn.proj, ffn.fc1, ffn.fc2, ada_lin.1
    assert len(quantised) == 5 * var.depth
    assert quantised == sorted(n for n, _ in precision.quantised_layers(var))
    for kept in ("head", "word_embed", "head_nm.ada_lin.1"):
        assert kinds[kept] == "Parameter"
    assert precision.weight_precision(var) == "int8"
    assert all(type(p) is torch.nn.Parameter for p in var.vae.parameters())


def test_outputs_stay_close_to_full_precision(builtin_int8):
    full, _ = variant.load_model("builtin")
    ref, quant = _logits(full), _logits(builtin_int8[0])
    assert not torch.equal(ref, quant)  # it did change the arithmetic
    # per-row int8 rounding: logits within 2% of their range, the arg-max mostly kept
    assert (quant - ref).abs().max() < 0.02 * (ref.max() - ref.min())
    assert (quant.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_a_saved_quantised_model_loads_back_identical(builtin_int8, tmp_path):
    var, vae = builtin_int8
    variant.save_pretrained(tmp_path / "m", var, vae)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["weights"] == "int8"
    again, _ = variant.load_model(tmp_path / "m")
    assert precision.weight_precision(again) == "int8"
    assert torch.equal(_logits(var), _logits(again))
    a, b = var.generate(2, [1, 2], seed=5), again.generate(2, [1, 2], seed=5)
    assert torch.equal(a.images, b.images)
    named, _ = variant.load_model(tmp_path / "m", weights="int8")  # as stored: no change
    assert torch.equal(_logits(named), _logits(var))


def test_unsupported_precisions_are_refused_before_loading(capsys):
    with pytest.raises(ValueError, match="fp8 weights need a CUDA device of compute capability "
                                         "8.9 .* cpu supports: int8"):
        variant.load_model("random:var-d16", weights="fp8")  # refused before building d16
    with pytest.raises(ValueError, match="int8 weight-only kernels run on cpu and cuda; meta"):
        precision.check_precision("int8", "meta")
    with pytest.raises(ValueError, match="one of int8, fp8"):
        variant.load_model("builtin", weights="int4")
    assert main(["sample", "--plan", "d4+wfp8", "--num", "1", "--out", "x.png"]) == 2
    assert "cpu supports: int8" in capsys.readouterr().err


def test_missing_torchao_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError("No module named 'torchao'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ImportError, match=r"pip install 'variant\[quant\]'"):
        precision.check_precision("int8", "cpu")


def test_sampling_w8_needs_a_model_loaded_at_int8(builtin_int8):
    full, _ = variant.load_model("builtin")
    with pytest.raises(ValueError, match=r"weights='int8'\) \(command line: --weights int8\)"):
        full.generate(2, [0, 1], plan="d4+w8")
    var, _ = builtin_int8
    plain = var.generate(2, [0, 1], seed=3, plan="d4")  # neutral: the weights as loaded
    named = var.generate(2, [0, 1], seed=3, plan="d4+w8")
    assert torch.equal(plain.images, named.images) and named.levers.get("weights") == "int8"


def test_the_lever_flows_like_the_others():
    assert parse_configuration("d8+cfgstop8+w8") == ("d8", {"cfg_stop": 8, "weights": "int8"})
    assert parse_configuration("full+wfp8")[1] == {"weights": "fp8"}
    config = Configuration.resolve("d2+w8+cfgstop2", 4, (1, 2, 4), SamplingConfig())
    assert config.name == "d2+cfgstop2+w8"
    alone = Configuration.resolve("d2+w8", 4, (1, 2, 4), SamplingConfig())
    assert len(alone.levers.groups) == 1 and not alone.levers.changes_work  # the plain work
    parser = build_parser()
    settings = sampling_from_args(parser.parse_args(["sample", "--weights", "int8"]))
    assert settings.weights == "int8" and settings.cli_args()[-2:] == ["--weights", "int8"]
    assert sampling_from_args(parser.parse_args(["sample", *settings.cli_args()])) == settings
    grid = tune.default_grid(8, 6, [4, 2])
    assert "full+w8" in grid and "d4+w8" in grid
    assert tune.family("full+w8") == "weight precision" and tune.family("d4+w8") == "combination"


def test_quantised_bytes_are_exact(builtin_int8):
    var, vae = builtin_int8
    held = sum(t.nbytes for _, m in precision.quantised_layers(var)
               for t in precision.inner_tensors(m.weight).values())
    predicted = sum(precision.quantised_bytes(*m.weight.shape, "int8")
                    for _, m in precision.quantised_layers(var))
    assert held == predicted
    state = precision.plain_state(var.state_dict())
    total = sum(t.nbytes for t in state.values()) + sum(t.nbytes for t in vae.state_dict().values())
    assert model_bytes(var.config, vae.config, "int8") == total


def test_the_planner_picks_int8_where_full_precision_does_not_fit(capsys, monkeypatch):
    preset = model_preset("var-d16")
    workload = Workload(batch=2, sampling=SamplingConfig(dtype="fp32"))
    predictor = Predictor(preset.var, preset.vae, workload)
    plans = candidate_plans(16, 10)
    full, quantised = predictor.predict(plans[0]), predictor.predict(plans[0], "int8")
    assert quantised.kv_bytes == full.kv_bytes and quantised.memory_bytes < full.memory_bytes
    limit = (full.memory_bytes + quantised.memory_bytes) // 2
    choice = choose(Budget(max_memory=limit), predicted_options(predictor, plans, ["int8"]))
    assert choice.chosen.spec == "full+w8" and choice.ahead[0].spec == "full"
    monkeypatch.setattr("variant.cli.budget.current_rss_bytes", lambda: 0)  # no runtime term
    # predicted: full 2.11 GiB, full+w8 1.27 GiB (weights, KV, activations)
    argv = ["plan", "--model", "random:var-d16", "--batch", "2", "--dtype", "fp32", "--device",
            "cpu", "--max-memory", "1.7GiB"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "chosen plan: full+w8 (all 16 layers at every scale, int8" in out
    assert "predicted memory:" in out and "= weights" in out and "KV" in out
    assert "the next deeper plan, full, needs memory" in out
    command = out.strip().splitlines()[-1].split("confirm with: ")[1]
    argv = shlex.split(command)
    assert argv[argv.index("--plans") + 1] == "full+w8"
    assert main(["plan", "--model", "random:var-d16", "--weights", "fp8", "--device", "cpu",
                 "--max-memory", "1.7GiB"]) == 2
    assert "--weights fp8 does not run on cpu (there: int8)" in capsys.readouterr().err



@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_measured_kv_equals_predicted_on_int8_weights(builtin_int8, dtype):
    """The quantised layers follow autocast (their input is cast as a linear's would be), so
    keys and values keep the compute dtype and the cost model's bytes stay exact."""
    var, _ = builtin_int8
    for spec in ("full+w8", "d4+w8+cfgstop4", "d2+w8+prune0.5@4+kv1,2"):
        config = Configuration.of(var, spec, SamplingConfig(dtype=dtype, seed=1))
        res = variant.generate(var, 2, [0, 1], configuration=config)
        predicted = CostModel(var.config, dtype, config.settings.rows(2)).kv_peak_bytes(
            config.plan, config.levers)
        assert res.kv_peak_bytes == predicted, spec


def test_copies_per_precision_share_the_tokenizer_and_quantise_once():
    var, vae = variant.load_model("builtin")
    copies = precision.WeightCopies(var)
    assert copies(None) is var and precision.weight_precision(var) is None
    int8 = copies("int8")
    assert copies("int8") is int8 and int8.vae is vae and precision.weight_precision(int8) == "int8"
    with pytest.raises(ValueError, match="already int8"):
        precision.quantize_weights(int8, "int8")


def test_bench_runs_mixed_precisions_and_predicts_their_memory(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--plans", "d4", "d4+w8", "--isolate", "no", "--batch", "1",
                 "--warmup", "0", "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    rows = {r["plan"]: r for r in json.loads(out.read_text())["rows"]}
    plain, quantised = (rows[k] for k in ("d4", "d4+w8"))
    assert quantised["kv_peak_bytes"] == plain["kv_peak_bytes"]
    assert quantised["memory_predicted_bytes"] < plain["memory_predicted_bytes"]


def test_served_commands_load_the_weights_the_server_did(builtin_int8):
    from variant.cli.common import model_weights
    from variant.serve.engine import Engine
    from variant.serve.schema import ImageRequest

    var, vae = builtin_int8
    engine = Engine(var, vae, source="builtin")
    request = ImageRequest((1,), 0, "d4", SamplingConfig(rng="per-image", seed=0))
    argv = shlex.split(engine.command(request, engine.configuration("d4", request.settings)))
    args = build_parser().parse_args(argv[1:])
    assert args.weights == "int8" and model_weights(args, [args.plan]) == "int8"


def test_a_measured_front_under_a_memory_budget_picks_int8(tmp_path, capsys):
    """`variant plan --front`: full precision is over the limit, its int8 twin within."""
    def row(spec, fid, memory):
        family = tune.family(spec)
        return {"spec": spec, "family": family, "plan": parse_configuration(spec)[0],
                "quality": {"fid": {"mean": fid, "low": fid - 0.5, "high": fid + 0.5}},
                "cost": {"total_s": 0.1, "total_q1_s": 0.1, "total_q3_s": 0.1,
                         "kv_peak_bytes": 1000, "peak_memory_bytes": memory * 2**20,
                         "gflops_per_image": 1.0},
                "on_front": {"latency": True, "kv": True, "memory": True}}

    front = {"format": tune.FRONT_FORMAT, "version": 1,
             "rows": [row("full", 5.0, 600), row("full+w8", 5.2, 300), row("d2", 8.0, 250)],
             "meta": {"model": "random:tiny", "device_name": "x", "threads": 1,
                      "bench_batch": 2, "seeds": [0, 1], "num_per_class": 2, "num_classes": 2,
                      "metric": "builtin", "metric_key": "fid",
                      "settings": SamplingConfig().to_dict(), "depth": 4, "num_scales": 3}}
    path = tmp_path / "front.json"
    path.write_text(json.dumps(front))
    assert main(["plan", "--front", str(path), "--max-memory", "400MiB"]) == 0
    argv = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert argv[:2] == ["variant", "sample"] and argv[argv.index("--plan") + 1] == "full+w8"
