"""Per-image random streams (`SamplingConfig.rng = 'per-image'`): image i of a call draws from
its own generator of (seed, i), so its tokens do not depend on the other images of the call.
The official stream ('batch') stays the default; scripts/fingerprint.py pins it bit for bit."""

import json

import pytest
import torch

from variant.cli.main import main
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _tokens(result, row: int) -> list[list[int]]:
    return [scale[row].tolist() for scale in result.indices]


def test_an_images_tokens_do_not_depend_on_the_other_images(tiny):
    per_image = SamplingConfig(rng="per-image", top_k=0, top_p=0.0)
    alone = generate(tiny, 1, [3], settings=per_image, image_keys=[(7, 2)])
    with_others = generate(tiny, 3, [5, 3, 1], settings=per_image,
                           image_keys=[(11, 0), (7, 2), (7, 0)])
    assert _tokens(alone, 0) == _tokens(with_others, 1)
    # the official stream does depend on the batch: the same image drawn third differs
    batch = SamplingConfig(top_k=0, top_p=0.0, seed=7)
    assert _tokens(generate(tiny, 1, [3], settings=batch), 0) != _tokens(
        generate(tiny, 3, [5, 1, 3], settings=batch), 2)


def test_per_image_streams_default_to_seed_and_index(tiny):
    settings = SamplingConfig(rng="per-image", seed=4, more_smooth=True)
    keyed = generate(tiny, 2, [1, 2], settings=settings.replace(seed=None),
                     image_keys=[(4, 0), (4, 1)])
    default = generate(tiny, 2, [1, 2], settings=settings)
    assert torch.equal(keyed.images, default.images)
    other_seed = generate(tiny, 2, [1, 2], settings=settings.replace(seed=5))
    assert not all(torch.equal(a, b) for a, b in zip(default.indices, other_seed.indices))
    # random classes come from each image's stream too
    drawn = generate(tiny, 2, None, settings=settings)
    assert drawn.labels.tolist() == generate(tiny, 2, None, settings=settings).labels.tolist()


def test_bad_stream_settings_are_refused(tiny):
    with pytest.raises(ValueError, match="rng must be one of batch, per-image"):
        SamplingConfig(rng="row")
    with pytest.raises(ValueError, match="set rng='per-image'"):
        generate(tiny, 1, [0], settings=SamplingConfig(seed=0), image_keys=[(0, 0)])
    with pytest.raises(ValueError, match="got 1 image keys for B=2"):
        generate(tiny, 2, [0, 1], settings=SamplingConfig(rng="per-image"), image_keys=[(0, 0)])


def test_flags_and_records_carry_the_stream():
    settings = SamplingConfig(rng="per-image", seed=3)
    assert settings.cli_args()[-2:] == ["--rng", "per-image"]
    assert settings.to_dict()["rng"] == "per-image"
    assert "rng" not in SamplingConfig().to_dict()  # older records still compare equal
    assert "--rng" not in SamplingConfig().cli_args()


def test_sample_per_image_tokens_do_not_depend_on_batch_size(tmp_path):
    """`variant sample --rng per-image`: image j draws from (--seed, j) whatever the chunking."""
    def run(batch_size: int) -> dict:
        out = tmp_path / f"b{batch_size}.json"
        assert main(["sample", "--model", "random:tiny", "--labels", "1", "2", "3",
                     "--rng", "per-image", "--seed", "5", "--batch-size", str(batch_size),
                     "--out", str(tmp_path / f"b{batch_size}.png"), "--json", str(out)]) == 0
        return json.loads(out.read_text())

    one, three = run(1), run(3)
    assert one["indices_sha256"] == three["indices_sha256"]
    assert one["settings"]["rng"] == "per-image"
