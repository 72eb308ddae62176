"""Compiled scale steps (variant/compiling.py): the per-scale step traces whole, cache
bookkeeping included, gives the eager logits, falls back to eager with one log line, and under
inductor draws the eager tokens (fp32, fixed seed)."""

import logging

import pytest
import torch

import variant
from helpers import cached_logits
from variant.compiling import CompiledStep, CompiledSteps
from variant.config import VARConfig
from variant.models.var import VAR

pytestmark = pytest.mark.usefixtures("one_thread")


def _model_and_inputs():
    var, _ = variant.load_model("random:tiny")
    var.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, var.L - 1, var.Cvae, generator=g)
    return var, torch.tensor([1, 2]), x


@pytest.mark.parametrize("plan", ["full", "d2"])
def test_compiled_step_traces_each_scale_whole_and_gives_the_eager_logits(plan, caplog):
    var, label, x = _model_and_inputs()
    plan = var.resolve_plan(None if plan == "full" else plan)
    graphs = []

    def count_graphs(gm, example_inputs):  # dynamo's graph, run as traced (no inductor)
        graphs.append(gm)
        return gm.forward

    steps = CompiledSteps(var, CompiledStep(VAR, backend=count_graphs))
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        eager, eager_cache = cached_logits(var, label, x, plan)
        compiled, compiled_cache = cached_logits(steps, label, x, plan)
    assert not caplog.records  # no fallback: the compiled graphs ran
    assert len(graphs) == var.num_scales  # one whole graph per scale, no graph break
    assert torch.equal(compiled, eager)
    assert compiled_cache.peak_bytes == eager_cache.peak_bytes


@pytest.mark.parametrize("levers", [{"cfg_stop": 2, "guide_plan": "d2"}, {"kv_keep": (0, 1)},
                                    {"prune": (0.5, 2)}, {"kv_precision": "int8"},
                                    {"kv_precision": "fp8@1", "kv_keep": (1, 0)}],
                         ids=["guide", "kv_keep", "prune", "kv8", "kvfp8@1"])
def test_compiled_steps_run_the_levers_exactly(levers, caplog):
    """Row groups, the chunked cache, pruned positions and quantised keys/values traced into
    the step's graphs: the same tokens and the same measured KV peak as eager (traced without
    code generation)."""
    from variant.sampling.sampler import generate

    var, _, _ = _model_and_inputs()
    step = CompiledStep(VAR, backend="eager")
    settings = variant.SamplingConfig(seed=0, **levers)
    with caplog.at_level(logging.WARNING, logger="variant.compiling"):
        compiled = generate(CompiledSteps(var, step), 2, [1, 2], settings=settings)
    eager = generate(var, 2, [1, 2], settings=settings)
    assert not eager.levers.is_neutral  # the lever acts on this 3-scale model
    assert not caplog.records and not step.eager
    assert all(torch.equal(a, b) for a, b in zip(compiled.indices, eager.indices))
    assert compiled.kv_peak_bytes == eager.kv_peak_bytes


def test_flex_backend_runs_the_step_eagerly(caplog):
    """attn_backend='flex' with compile: FlexAttention traced into the step's graph loses KV
    meter updates, so the step refuses to compile (one log line) and runs eagerly, exactly."""
    var, label, x = _model_and_inputs()
    flex = VAR(VARConfig(**{**var.config.__dict__, "attn_backend": "flex"}), var.vae).eval()
    flex.load_state_dict(var.state_dict())
    steps = CompiledSteps(flex, CompiledStep(VAR, backend="eager"))
    plan = flex.resolve_plan("d2")
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="variant.compiling"):
        eager, eager_cache = cached_logits(flex, label, x, plan)
        compiled, compiled_cache = cached_logits(steps, label, x, plan)  # checks live bytes 0
    assert len(caplog.records) == 1 and steps.step.eager
    assert "FlexAttention inside a compiled step" in caplog.records[0].getMessage()
    assert torch.equal(compiled, eager) and compiled_cache.peak_bytes == eager_cache.peak_bytes


def test_failed_compilation_says_so_once_and_runs_eagerly(caplog):
    var, label, x = _model_and_inputs()

    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    steps = CompiledSteps(var, CompiledStep(VAR, backend=broken))
    plan = var.full_plan()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="variant.compiling"):
        eager, _ = cached_logits(var, label, x, plan)
        fallback, _ = cached_logits(steps, label, x, plan)
        again, _ = cached_logits(steps, label, x, plan)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no C++ compiler here" in lines[0] and "eagerly" in lines[0]
    assert torch.equal(fallback, eager) and torch.equal(again, eager)


@pytest.mark.slow
def test_inductor_compiled_sampling_draws_the_eager_tokens(caplog):
    """`SamplingConfig(compile=True)` through inductor (C++ on CPU): same tokens for a fixed
    seed in fp32, same KV peak; a second call reuses the graphs."""
    var, _, _ = _model_and_inputs()
    settings = variant.SamplingConfig(seed=5)
    with caplog.at_level(logging.WARNING, logger="variant.compiling"):
        eager = var.generate(2, [3, 4], settings=settings, plan="d2")
        compiled = var.generate(2, [3, 4], settings=settings.replace(compile=True), plan="d2")
        again = var.generate(2, [3, 4], settings=settings.replace(compile=True), plan="d2")
    assert not caplog.records
    for out in (compiled, again):
        assert all(torch.equal(a, b) for a, b in zip(out.indices, eager.indices))
        assert out.kv_peak_bytes == eager.kv_peak_bytes
        torch.testing.assert_close(out.images, eager.images, atol=1e-4, rtol=0)


@pytest.mark.parametrize("command", [["sample"], ["bench"], ["tune", "--out", "x"]])
def test_compile_flag_reaches_the_sampling_config(command):
    from variant.cli.common import sampling_from_args
    from variant.cli.main import build_parser

    args = build_parser().parse_args([*command, "--compile"])
    settings = sampling_from_args(args)
    assert settings.compile and "--compile" in settings.cli_args()
    assert settings.to_dict()["compile"] is True
    plain = sampling_from_args(build_parser().parse_args(command))
    assert not plain.compile and "compile" not in plain.to_dict()  # records stay as they were
