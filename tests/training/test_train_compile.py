"""`TrainConfig(compile=True)`: the transformer blocks under torch.compile; a failed
compilation says so once and the same steps run eagerly, bitwise as an eager run."""

import json
import logging
from pathlib import Path

import pytest
from train_helpers import assert_weights_equal, final_weights

from variant.compiling import compile_blocks
from variant.training import Trainer


def _losses(out_dir):
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_failed_block_compilation_reruns_the_step_eagerly(tiny, caplog):
    eager = tiny("eager", max_steps=3)
    Trainer(eager).fit()

    def broken(gm, example_inputs):
        raise RuntimeError("inductor is not available here")

    fallback = tiny("fallback", max_steps=3)
    trainer = Trainer(fallback)
    compile_blocks(trainer.var, backend=broken)
    with caplog.at_level(logging.WARNING, logger="variant.compiling"):
        trainer.fit()
    lines = [r.getMessage() for r in caplog.records if r.name == "variant.compiling"]
    assert len(lines) == 1 and "inductor is not available here" in lines[0]
    assert _losses(fallback.out_dir) == _losses(eager.out_dir)
    assert_weights_equal(final_weights(eager.out_dir), final_weights(fallback.out_dir))


@pytest.mark.slow
def test_compiled_blocks_train_like_eager(tiny, caplog):
    """Inductor on CPU, fp32, no drop-path (inductor draws its own random numbers): the losses
    of three steps, full and subnet, agree with eager to float32 rounding."""
    eager = tiny("eager", max_steps=3, drop_path_rate=0.0)
    Trainer(eager).fit()
    compiled = tiny("compiled", max_steps=3, drop_path_rate=0.0, compile=True)
    with caplog.at_level(logging.WARNING, logger="variant.compiling"):
        Trainer(compiled).fit()
    assert not [r for r in caplog.records if r.name == "variant.compiling"]
    assert _losses(compiled.out_dir) == pytest.approx(_losses(eager.out_dir), rel=1e-4)
