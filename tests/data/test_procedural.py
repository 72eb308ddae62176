"""Shapes-10: determinism, range, balance, and the coarse-vs-fine design claim."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from variant.data import CLASS_NAMES, ImageFolder, ProceduralImages, render, save_as_image_folder


def test_same_seed_and_index_give_identical_images():
    a, b = ProceduralImages(50, seed=3), ProceduralImages(50, seed=3)
    for i in (0, 7, 49):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    # An item does not depend on the dataset length or on what was rendered before.
    assert torch.equal(ProceduralImages(1000, seed=3)[7][0], a[7][0])


def test_different_seed_or_index_gives_different_images():
    a, b = ProceduralImages(20, seed=0), ProceduralImages(20, seed=1)
    assert not torch.equal(a[5][0], b[5][0])
    assert not torch.equal(a[5][0], a[15][0])  # same class, different image


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shape_range_and_label(size):
    dataset = ProceduralImages(12, image_size=size)
    for i in (0, 11):
        img, label = dataset[i]
        assert img.shape == (3, size, size) and img.dtype == torch.float32
        assert img.min() >= -1.0 and img.max() <= 1.0
        assert label == i % 10 and isinstance(label, int)
    assert img.std() > 0.1  # not a blank canvas


def test_classes_balanced_and_named():
    dataset = ProceduralImages(1000, num_classes=10)
    labels = [dataset.label_of(i) for i in range(len(dataset))]
    assert np.bincount(labels).tolist() == [100] * 10
    assert dataset.class_names == CLASS_NAMES[:10] and len(set(CLASS_NAMES)) >= 10
    assert ProceduralImages(10, num_classes=4).class_names == CLASS_NAMES[:4]


def test_render_is_uint8_and_rejects_bad_arguments():
    img = render(3, np.random.default_rng(0), 48)
    assert img.dtype == np.uint8 and img.shape == (48, 48, 3)
    with pytest.raises(ValueError, match="label"):
        render(10, np.random.default_rng(0), 64)
    with pytest.raises(ValueError, match="num_classes"):
        ProceduralImages(10, num_classes=11)


def _gaussian_blur(x_B3HW: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, reflect padding; shift-and-add (depthwise conv2d is slow on CPU)."""
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1.0)
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    taps = (taps / taps.sum()).tolist()
    size = x_B3HW.shape[-1]
    x = F.pad(x_B3HW, (radius, radius, radius, radius), mode="reflect")
    x = sum(w * x[..., :, k : k + size] for k, w in enumerate(taps))
    return sum(w * x[..., k : k + size, :] for k, w in enumerate(taps))


def _nearest_centroid_accuracy(train_BF, train_y, test_BF, test_y, num_classes=10) -> float:
    centroids = torch.stack([train_BF[train_y == c].mean(0) for c in range(num_classes)])
    return (torch.cdist(test_BF, centroids).argmin(1) == test_y).float().mean().item()


def test_class_lives_in_coarse_structure_not_in_fine_texture():
    """4x4 area averages classify well above chance; the high-pass residual is near chance."""
    dataset = ProceduralImages(100_000, image_size=64, seed=1)
    train = [dataset[i] for i in range(400)]
    test = [dataset[i] for i in range(50_000, 50_400)]
    x_train, y_train = torch.stack([x for x, _ in train]), torch.tensor([y for _, y in train])
    x_test, y_test = torch.stack([x for x, _ in test]), torch.tensor([y for _, y in test])

    def coarse(x):  # 1/16 resolution: 4x4 RGB
        return F.adaptive_avg_pool2d(x, 4).flatten(1)

    def layout(x):  # 4x4 luminance, per-image mean and contrast removed: no colour cue left
        g = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)
        g = g - g.mean(1, keepdim=True)
        return g / (g.std(1, keepdim=True) + 1e-6)

    def fine(x):  # image minus its blur (sigma 1 px)
        return (x - _gaussian_blur(x, 1.0)).flatten(1)

    acc = {
        name: _nearest_centroid_accuracy(f(x_train), y_train, f(x_test), y_test)
        for name, f in (("coarse", coarse), ("layout", layout), ("fine", fine))
    }
    assert acc["coarse"] > 0.9, acc
    assert acc["layout"] > 0.5, acc
    assert acc["fine"] < 0.25, acc  # chance is 0.10


def test_save_as_image_folder_round_trips(tmp_path):
    root = save_as_image_folder(tmp_path / "shapes", 2, image_size=32, seed=5, num_classes=3)
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASS_NAMES[:3])
    dataset = ProceduralImages(6, image_size=32, seed=5, num_classes=3)
    name = CLASS_NAMES[dataset.label_of(4)]
    png = np.asarray(Image.open(root / name / "000004.png"))
    assert np.array_equal(png, dataset.render_uint8(4))  # PNG is lossless
    folder = ImageFolder(root, image_size=32, mid_reso=1.0, train=False)
    assert folder.classes == sorted(CLASS_NAMES[:3]) and len(folder) == 6
