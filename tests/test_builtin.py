"""The shipped built-in model: it loads, samples under every plan and draws its classes."""

import pytest
import torch

from variant.builtin import builtin_model_dir
from variant.cli.main import main
from variant.eval.metric_net import classify, load_metric_net
from variant.images import to_uint8
from variant.pretrained import load_model


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin")


def test_builtin_is_small_and_loads(builtin):
    var, vae = builtin
    size = sum(p.stat().st_size for p in builtin_model_dir().iterdir())
    assert size < 12 * 2**20
    assert (var.depth, var.num_classes, vae.config.image_size) == (8, 10, 64)
    assert var.pos_1LC.dtype == torch.float32  # stored as float16, computed in float32


@pytest.mark.parametrize("plan", ["full", "d4", "d2"])
def test_builtin_samples_show_their_class(builtin, plan):
    """Generated images are recognised as their conditioning class by the metric network."""
    from variant.cli.common import resolve_plan

    var, vae = builtin
    labels = torch.arange(10).repeat(2)
    out = var.generate(20, labels, seed=0, plan=resolve_plan(plan, var, None))
    predicted = classify(load_metric_net(), to_uint8(out.images))
    accuracy = (torch.as_tensor(predicted) == labels).float().mean().item()
    assert accuracy >= 0.7, accuracy


def test_sample_without_model_argument(tmp_path, capsys):
    assert main(["sample", "--num", "16", "--plan", "d2", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert "wrote 16 images (64x64)" in capsys.readouterr().out
