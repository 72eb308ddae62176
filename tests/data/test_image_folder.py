"""ImageFolder: scanning, colour modes, official transforms, bad files and error messages."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from variant.data import ImageFolder, load_rgb
from variant.data.folder import center_crop_box, resize_shorter_side, to_tensor_pm1


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _write(path, img: Image.Image):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def test_classes_sorted_extensions_case_insensitive(tmp_path):
    _write(tmp_path / "zebra" / "a.PNG", _noise_image(8, 8))
    _write(tmp_path / "zebra" / "sub" / "b.JPEG", _noise_image(8, 8))
    _write(tmp_path / "apple" / "c.bmp", _noise_image(8, 8))
    _write(tmp_path / "apple" / "d.webp", _noise_image(8, 8))
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    _write(tmp_path / ".hidden" / "e.png", _noise_image(8, 8))
    dataset = ImageFolder(tmp_path, image_size=8, mid_reso=1.0)
    assert dataset.classes == ["apple", "zebra"]
    assert dataset.class_to_idx == {"apple": 0, "zebra": 1}
    assert [p.name for p, _ in dataset.samples] == ["c.bmp", "d.webp", "a.PNG", "b.JPEG"]
    assert dataset.targets == [0, 0, 1, 1]
    assert [dataset[i][1] for i in range(4)] == [0, 0, 1, 1]
    summary = dataset.summary()
    assert (summary.images, summary.classes, summary.skipped) == (4, 2, 0)


def test_colour_modes_become_rgb(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent -> white background
    rgb = np.asarray(load_rgb(_write(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"))))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]

    grey = Image.fromarray(np.array([[0, 77], [200, 255]], dtype=np.uint8), "L")
    rgb = np.asarray(load_rgb(_write(tmp_path / "grey.png", grey)))
    assert rgb.shape == (2, 2, 3) and rgb[1, 0].tolist() == [200, 200, 200]

    palette = Image.new("P", (2, 2))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    rgb = np.asarray(load_rgb(_write(tmp_path / "palette.png", palette)))
    assert rgb[1, 1].tolist() == [10, 200, 30] and rgb[0, 0].tolist() == [0, 0, 0]

    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # red in CMYK
    img = load_rgb(_write(tmp_path / "cmyk.jpg", cmyk))
    assert img.mode == "RGB" and np.asarray(img)[0, 0, 0] > 200

    deep = Image.fromarray(np.array([[0, 65535], [32896, 257]], dtype=np.uint16))
    assert deep.mode == "I;16"
    rgb = np.asarray(load_rgb(_write(tmp_path / "deep.png", deep)))
    assert rgb[..., 0].tolist() == [[0, 255], [128, 1]]  # scaled by 1/257, not clipped


def test_lanczos_resize_then_random_crop(tmp_path):
    _write(tmp_path / "only" / "wide.png", _noise_image(100, 60))
    dataset = ImageFolder(tmp_path, image_size=32, train=True, seed=7)
    assert dataset.resize_to == 36  # round(1.125 * 32)
    resized = resize_shorter_side(Image.open(dataset.samples[0][0]).convert("RGB"), 36)
    expected = Image.open(dataset.samples[0][0]).resize((60, 36), Image.Resampling.LANCZOS)
    assert resized.size == (60, 36) and np.array_equal(np.asarray(resized), np.asarray(expected))

    full = to_tensor_pm1(np.asarray(resized))  # (3, 36, 60)
    crops = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        img, _ = dataset[0]
        assert img.shape == (3, 32, 32) and img.min() >= -1 and img.max() <= 1
        assert torch.equal(img, dataset[0][0])  # a pure function of (seed, epoch, index)
        windows = [
            (top, left)
            for top in range(5)
            for left in range(29)
            if torch.equal(full[:, top : top + 32, left : left + 32], img)
        ]
        assert len(windows) == 1, "the output must be a crop of the LANCZOS-resized image"
        crops.add(windows[0])
    assert len(crops) > 1  # epochs draw different crops


def test_eval_center_crop_and_hflip(tmp_path):
    _write(tmp_path / "only" / "tall.png", _noise_image(50, 90))
    evaluation = ImageFolder(tmp_path, image_size=40, train=False)  # resize to 45: (45, 81)
    resized = to_tensor_pm1(np.asarray(resize_shorter_side(load_rgb(evaluation.samples[0][0]), 45)))
    top, left = center_crop_box(81, 45, 40)
    assert (top, left) == (20, 2)
    assert torch.equal(evaluation[0][0], resized[:, top : top + 40, left : left + 40])

    flipping = ImageFolder(tmp_path, image_size=40, train=True, hflip=True, seed=1)
    plain = ImageFolder(tmp_path, image_size=40, train=True, hflip=False, seed=1)
    flips = []
    for epoch in range(8):
        flipping.set_epoch(epoch)
        plain.set_epoch(epoch)
        a, b = flipping[0][0], plain[0][0]  # same crop, flipped or not
        flips.append(not torch.equal(a, b))
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    assert any(flips) and not all(flips)


def test_corrupt_files_are_skipped_logged_and_counted(tmp_path, caplog):
    _write(tmp_path / "a" / "good1.png", _noise_image(16, 16, seed=1))
    (tmp_path / "a" / "bad.jpg").write_text("this is not a JPEG")
    _write(tmp_path / "b" / "good2.png", _noise_image(16, 16, seed=2))
    data = _write(tmp_path / "b" / "trunc.png", _noise_image(16, 16, seed=3)).read_bytes()
    (tmp_path / "b" / "trunc.png").write_bytes(data[: len(data) // 2])
    dataset = ImageFolder(tmp_path, image_size=16, mid_reso=1.0, train=False)
    assert [p.name for p, _ in dataset.samples] == [
        "bad.jpg",
        "good1.png",
        "good2.png",
        "trunc.png",
    ]

    with caplog.at_level(logging.WARNING, logger="variant.data.folder"):
        items = [dataset[i] for i in range(len(dataset))]
    good1, good2 = items[1][0], items[2][0]
    assert torch.equal(items[0][0], good1) and items[0][1] == 0  # bad.jpg -> next index
    assert torch.equal(items[3][0], good1) and items[3][1] == 0  # trunc.png -> wraps to good1
    assert not torch.equal(good1, good2)
    assert sorted(p.name for p in dataset.bad_files) == ["bad.jpg", "trunc.png"]
    assert dataset.summary().skipped == 2
    assert "bad.jpg" in caplog.text and "trunc.png" in caplog.text
    dataset[0]  # a known bad file is not decoded, logged or counted again
    assert len(dataset.bad_files) == 2


def test_empty_class_folder_is_reported(tmp_path, caplog):
    _write(tmp_path / "full" / "x.png", _noise_image(8, 8))
    (tmp_path / "hollow").mkdir()
    with caplog.at_level(logging.WARNING, logger="variant.data.folder"):
        dataset = ImageFolder(tmp_path, image_size=8, mid_reso=1.0)
    assert "hollow" in caplog.text
    assert dataset.classes == ["full", "hollow"] and dataset.summary().empty_classes == ("hollow",)


def test_bad_roots_raise_with_the_root_and_the_expected_layout(tmp_path):
    with pytest.raises(ValueError, match="is empty.*<class_name>/<image>") as err:
        ImageFolder(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ValueError, match="not an existing directory"):
        ImageFolder(tmp_path / "missing")
    _write(tmp_path / "loose.png", _noise_image(8, 8))
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="1 class folders but no images"):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="mid_reso"):
        ImageFolder(tmp_path, mid_reso=0.9)
