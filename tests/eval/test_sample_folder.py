"""Deterministic, resumable, shardable class-balanced sampling into PNG folders."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from variant.eval.sample_folder import (
    SamplingSpec,
    chunk_seed,
    chunks,
    image_path,
    remove_stale_temporaries,
    sample_to_folder,
    shard,
)
from variant.images import save_png
from variant.sampling.plan import DepthPlan
from variant.sampling.settings import SamplingConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = SamplingSpec(num_per_class=3, num_classes=4, batch_size=2, seed=7)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_chunks_cover_every_image_once_and_seeds_are_pure():
    covered = [i for c in chunks(SPEC) for i in c.indices(SPEC.num_per_class)]
    assert covered == list(range(SPEC.num_images))
    assert chunk_seed(7, 2, 1) == chunk_seed(7, 2, 1)
    assert len({chunk_seed(7, c, k) for c in range(50) for k in range(50)}) == 2500
    ranks = [shard(chunks(SPEC), r, 3) for r in range(3)]
    assert sorted((c.class_id, c.chunk_index) for rc in ranks for c in rc) == sorted(
        (c.class_id, c.chunk_index) for c in chunks(SPEC))
    with pytest.raises(ValueError, match="rank"):
        shard(chunks(SPEC), 3, 3)


def test_folder_is_deterministic_balanced_and_resumable(tiny, tmp_path):
    var, vae = tiny
    plan = DepthPlan.full(var.depth, var.num_scales)
    first = sample_to_folder(var, vae, plan, tmp_path / "a", SPEC)
    assert (first.generated, first.skipped) == (12, 0)
    files = _bytes(tmp_path / "a")
    assert sorted(files) == [f"{i:06d}.png" for i in range(12)]
    with Image.open(image_path(tmp_path / "a", 0)) as img:
        assert img.size == (8, 8) and img.mode == "RGB"
    meta = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert meta["spec"]["num_per_class"] == 3 and meta["layer_sets"][0] == [0, 1, 2, 3]
    # Same settings into another folder: identical bytes.
    sample_to_folder(var, vae, plan, tmp_path / "b", SPEC)
    assert _bytes(tmp_path / "b") == files
    # Interrupted run: two files gone, one truncated; only those are written again.
    image_path(tmp_path / "a", 4).unlink()
    image_path(tmp_path / "a", 11).unlink()
    image_path(tmp_path / "a", 7).write_bytes(files["000007.png"][:20])
    untouched = image_path(tmp_path / "a", 0).stat().st_mtime_ns
    again = sample_to_folder(var, vae, plan, tmp_path / "a", SPEC)
    assert (again.generated, again.skipped) == (3, 9)
    assert _bytes(tmp_path / "a") == files
    assert image_path(tmp_path / "a", 0).stat().st_mtime_ns == untouched
    assert sample_to_folder(var, vae, plan, tmp_path / "a", SPEC).generated == 0


def test_sharding_gives_the_same_files(tiny, tmp_path):
    var, vae = tiny
    plan = DepthPlan.paper(var.depth, 2, 1, var.num_scales)
    sample_to_folder(var, vae, plan, tmp_path / "one", SPEC)
    r1 = sample_to_folder(var, vae, plan, tmp_path / "two", SPEC, rank=1, world_size=2)
    assert 0 < r1.generated < SPEC.num_images
    r0 = sample_to_folder(var, vae, plan, tmp_path / "two", SPEC, rank=0, world_size=2)
    assert r0.generated + r1.generated == SPEC.num_images
    assert _bytes(tmp_path / "two") == _bytes(tmp_path / "one")


def test_labels_are_class_major():
    assert SPEC.labels().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_other_settings_in_the_same_folder_are_refused(tiny, tmp_path):
    var, vae = tiny
    plan = DepthPlan.full(var.depth, var.num_scales)
    small = SamplingSpec(num_per_class=1, num_classes=2, batch_size=1)
    sample_to_folder(var, vae, plan, tmp_path, small)
    before = _bytes(tmp_path)
    with pytest.raises(ValueError, match="cfg: 1.5 there, 2.0 now|other settings"):
        sample_to_folder(var, vae, plan, tmp_path,
                         SamplingSpec(num_per_class=1, num_classes=2, batch_size=1,
                                      settings=SamplingConfig(cfg=2.0)))
    assert _bytes(tmp_path) == before


def test_bad_specs_and_plans(tiny, tmp_path):
    var, vae = tiny
    with pytest.raises(ValueError, match=">= 1"):
        SamplingSpec(num_per_class=0, num_classes=10)
    with pytest.raises(ValueError, match="dtype"):
        SamplingSpec(num_per_class=1, num_classes=10, settings=SamplingConfig(dtype="fp8"))
    with pytest.raises(ValueError, match="base seed"):
        SamplingSpec(num_per_class=1, num_classes=10, settings=SamplingConfig(seed=3))
    with pytest.raises(ValueError, match="model has 10"):
        sample_to_folder(var, vae, DepthPlan.full(4, 3), tmp_path,
                         SamplingSpec(num_per_class=1, num_classes=11))
    with pytest.raises(ValueError, match="layers"):
        sample_to_folder(var, vae, DepthPlan.full(8, 3), tmp_path / "x", SPEC)
    assert not (tmp_path / "x").exists()


def test_pixels_are_rounded():
    from variant.images import to_uint8

    x = torch.tensor([0.0, 0.499 / 255, 0.5 / 255 + 1e-6, 254.6 / 255, 1.2]).view(1, 1, 1, 5)
    out = to_uint8(x.expand(1, 3, 1, 5).contiguous())
    assert out.shape == (1, 1, 5, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 1, 255, 255]
    assert np.all(out[..., 0] == out[..., 2])


def test_png_writes_are_atomic_and_stale_temporaries_are_found(tmp_path, monkeypatch):
    path = tmp_path / "000000.png"

    def torn_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a png")
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", torn_save)
        with pytest.raises(OSError, match="disk full"):
            save_png(np.zeros((2, 2, 3), np.uint8), path)
    assert list(tmp_path.iterdir()) == []
    save_png(np.zeros((2, 2, 3), np.uint8), path)
    (tmp_path / ".000001.png.123.abcd.tmp").write_bytes(b"torn")  # what a killed rank leaves
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["000000.png"]
