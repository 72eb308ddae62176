"""Quality metrics: the shipped metric network, references, and every bad input."""

import sys
import types
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from variant.eval.features import INCEPTION_FILES, InceptionExtractor, build_extractor
from variant.eval.metric_net import VAL_SEED, classify, load_metric_net, render_images
from variant.eval.quality import build_metric, evaluate_quality, save_reference_statistics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builtin64():
    return build_metric("builtin", image_size=64, num_classes=10, reference_count=400)


@pytest.mark.parametrize("size", [64, 16])
def test_shipped_metric_net_classifies_real_images(size):
    net = load_metric_net()
    images, labels = render_images(200, seed=VAL_SEED, num_classes=10, image_size=size)
    assert (classify(net, images) == labels).mean() >= 0.98


def test_real_images_score_well_and_a_shifted_set_does_not(builtin64):
    real, labels = render_images(300, seed=5, num_classes=10, image_size=64)
    with pytest.warns(UserWarning, match="FID from 300 samples"):
        good = builtin64.evaluate(real, labels)
        swapped = builtin64.evaluate(real[..., ::-1].copy(), labels)
        own = build_metric("builtin", real, image_size=64).evaluate(real, labels)
    assert good["class_accuracy"] >= 0.98 and good["precision"] > 0.7 and good["recall"] > 0.7
    assert good["inception_score"] > 8.0  # 10 classes, confidently recognised
    assert swapped["fid"] > 20 * good["fid"] and swapped["class_accuracy"] < 0.5
    # A set against itself as the reference: FID ~ 0.
    assert own["fid"] == pytest.approx(0.0, abs=1e-6) and own["precision"] == own["recall"] == 1.0


def test_folder_and_array_sources_agree(builtin64, tmp_path):
    real, labels = render_images(20, seed=6, num_classes=10, image_size=64)
    for i, img in enumerate(real):
        Image.fromarray(img).save(tmp_path / f"{i:06d}.png")
    with pytest.warns(UserWarning):
        a = builtin64.evaluate(real, labels)
        b = builtin64.evaluate(tmp_path, labels)
        c = builtin64.evaluate(torch.from_numpy(real).permute(0, 3, 1, 2).float() / 255, labels)
    assert a["fid"] == pytest.approx(b["fid"]) == pytest.approx(c["fid"], rel=1e-4)


def test_labels_must_fit_the_images_and_the_classifier(builtin64):
    images = np.zeros((4, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="got 3 labels for 4 images"):
        builtin64.evaluate(images, [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels must be in 0..9"):
        builtin64.evaluate(images, [0, 1, 2, 10])


def test_reference_of_another_resolution_is_an_error(tmp_path):
    real, _ = render_images(10, seed=0, num_classes=10, image_size=16)
    for i, img in enumerate(real):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    with pytest.raises(ValueError, match="is 16x16 but the samples are 8x8"):
        build_metric("builtin", tmp_path, image_size=8)
    metric = build_metric("builtin", tmp_path, image_size=16)
    with pytest.raises(ValueError, match="16x16 but the samples are 64x64"):
        metric.evaluate(np.zeros((4, 64, 64, 3), np.uint8))


def test_statistics_reference_gives_fid_only(builtin64, tmp_path):
    real, labels = render_images(50, seed=7, num_classes=10, image_size=64)
    path = save_reference_statistics(builtin64.reference, tmp_path / "ref.npz", "metric-net")
    from_stats = build_metric("builtin", path, image_size=64)
    with pytest.warns(UserWarning, match="precision/recall need reference images|FID from 50"):
        row = from_stats.evaluate(real, labels)
    with pytest.warns(UserWarning):
        assert row["fid"] == pytest.approx(builtin64.evaluate(real, labels)["fid"])
    assert row["precision"] is None and row["recall"] is None
    assert any("precision/recall need reference images" in note for note in row["warnings"])
    with pytest.raises(ValueError, match="is 64x64 but the samples are 32x32"):
        build_metric("builtin", path, image_size=32)
    np.savez(tmp_path / "other.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="2048 dimensions"):
        build_metric("builtin", tmp_path / "other.npz", image_size=64)


def test_builtin_metric_refuses_other_class_counts():
    with pytest.raises(ValueError, match="--metric inception"):
        build_metric("builtin", image_size=64, num_classes=1000)
    with pytest.raises(ValueError, match="unknown metric"):
        build_extractor("lpips")


def test_inception_without_torch_fidelity_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    with pytest.raises(ValueError, match=r"pip install 'variant\[eval\]'"):
        build_extractor("inception")


FAKE_DIM = 32  # instead of 2048: an eigendecomposition of 2048 x 2048 takes seconds


class _FakeInception(torch.nn.Module):
    """Stands in for torch-fidelity's extractor: records the weights path, projects pixels."""

    calls: list = []

    def __init__(self, name, features_list, feature_extractor_weights_path=None):
        super().__init__()
        type(self).calls.append((name, tuple(features_list), feature_extractor_weights_path))
        if feature_extractor_weights_path is None:
            raise urllib.error.URLError("offline")
        self.proj = torch.nn.Linear(3, FAKE_DIM + 1008)

    def forward(self, x):
        assert x.dtype == torch.uint8
        out = self.proj(x.float().mean(dim=(2, 3)) / 255)
        return out[:, :FAKE_DIM], out[:, FAKE_DIM:]


@pytest.fixture
def fake_fidelity(monkeypatch, tmp_path):
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = _FakeInception
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(InceptionExtractor, "feature_dim", FAKE_DIM)
    _FakeInception.calls = []
    return tmp_path / "hub" / "checkpoints"


def test_missing_inception_weights_say_where_to_put_them(fake_fidelity):
    with pytest.raises(ValueError) as err:
        build_extractor("inception")
    msg = str(err.value)
    assert INCEPTION_FILES[0] in msg and str(fake_fidelity) in msg and "--inception-weights" in msg
    with pytest.raises(ValueError, match="does not exist"):
        build_extractor("inception", inception_weights=fake_fidelity / "nope.pth")


def test_inception_path_end_to_end_with_cached_weights(fake_fidelity, tmp_path):
    fake_fidelity.mkdir(parents=True)
    (fake_fidelity / INCEPTION_FILES[1]).write_bytes(b"")  # pytorch-fid's name is found too
    ref = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "ref.npz", ref)
    with pytest.raises(ValueError, match="needs --reference"):
        build_metric("inception", None, image_size=16)
    with pytest.warns(UserWarning, match="FID from 30 samples .* 32 dimensions"):
        row = evaluate_quality(ref, None, tmp_path / "ref.npz", metric="inception")
    assert _FakeInception.calls[-1] == ("inception-v3-compat", ("2048", "logits_unbiased"),
                                        str(fake_fidelity / INCEPTION_FILES[1]))
    assert row["fid"] == pytest.approx(0.0, abs=1e-6) and row["class_accuracy"] is None
    with pytest.raises(ValueError, match="16x16 but the samples are 8x8"):
        build_metric("inception", tmp_path / "ref.npz", image_size=8)
