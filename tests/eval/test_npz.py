"""ADM-format npz files: layout, streaming round trip, statistics."""

import numpy as np
import pytest
from PIL import Image

from variant.eval.npz import (
    check_image_batch,
    create_npz_from_sample_folder,
    iter_npz_batches,
    load_statistics,
    save_statistics,
    write_npz,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_write_npz_is_adm_layout(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    path = write_npz(tmp_path / "s.npz", [images[:3], images[3:6], images[6]], 7, (5, 6, 3),
                     labels=np.arange(7) % 2)
    with np.load(path) as data:  # what ADM's evaluator and np.load see
        assert sorted(data.keys()) == ["arr_0", "arr_1"]
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (7, 5, 6, 3)
        np.testing.assert_array_equal(data["arr_0"], images)
        np.testing.assert_array_equal(data["arr_1"], np.arange(7) % 2)
    assert check_image_batch(path) == (7, 5, 6)
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_streamed_reading_of_foreign_files(tmp_path, save):
    images = np.random.default_rng(1).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    save(tmp_path / "ref.npz", images)
    batches = list(iter_npz_batches(tmp_path / "ref.npz", batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)


def test_write_npz_checks_count_and_shape(tmp_path):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="expected 3 images"):
        write_npz(tmp_path / "a.npz", [images], 3, (4, 4, 3))
    with pytest.raises(ValueError, match="shape"):
        write_npz(tmp_path / "b.npz", [images], 2, (5, 5, 3))
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()
    assert list(tmp_path.iterdir()) == []  # no partial temporary left behind either


def test_create_npz_from_sample_folder(tmp_path):
    folder = tmp_path / "full"
    folder.mkdir()
    images = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    path = create_npz_from_sample_folder(folder, 3)
    assert path == tmp_path / "full.npz"
    with np.load(path) as data:
        np.testing.assert_array_equal(data["arr_0"], images)
    with pytest.raises(ValueError, match="lacks 1 of 4"):
        create_npz_from_sample_folder(folder, 4)


def test_statistics_round_trip_and_missing_keys(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    save_statistics(tmp_path / "stats.npz", mu, sigma, image_size=64, metric="metric-net")
    mu2, sigma2, meta = load_statistics(tmp_path / "stats.npz")
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    assert meta == {"image_size": 64, "metric": "metric-net"}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]
    np.savez(tmp_path / "images.npz", np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        load_statistics(tmp_path / "images.npz")
