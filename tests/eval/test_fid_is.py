"""FID, IS and precision/recall against closed forms and toy sets."""

import numpy as np
import pytest

from variant.eval.fid_is import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    precision_recall,
    too_few_samples,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_frechet_closed_form_diagonal():
    # Commuting covariances: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = 1.0 + 9.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_closed_form_rotated_and_one_dimensional():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # rotating both covariances keeps the distance
    a, b = np.diag([1.0, 2.0, 3.0, 4.0]), np.diag([4.0, 3.0, 2.0, 1.0])
    expected = sum((np.sqrt(x) - np.sqrt(y)) ** 2 for x, y in zip([1, 2, 3, 4], [4, 3, 2, 1]))
    assert frechet_distance(np.zeros(4), q @ a @ q.T, np.zeros(4), q @ b @ q.T) == pytest.approx(
        expected, rel=1e-9)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance(np.array([3.0]), np.array([[4.0]]), np.array([1.0]),
                            np.array([[9.0]])) == pytest.approx(4.0 + 1.0)


def test_frechet_matches_scipy_sqrtm_for_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = x @ x.T + 0.1 * np.eye(6), y @ y.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def _sqrtm_denman_beavers(m: np.ndarray, steps: int = 60) -> np.ndarray:
    """Principal square root of a matrix with positive real eigenvalues (here S1 S2, which is not
    symmetric), by the Denman-Beavers iteration: an algorithm independent of the eigendecompositions
    in fid_is and needing no scipy, so the check below runs in CI."""
    y, z = m, np.eye(m.shape[0])
    for _ in range(steps):
        y, z = (y + np.linalg.inv(z)) / 2, (z + np.linalg.inv(y)) / 2
    return y


def test_frechet_matches_independent_sqrtm_for_non_commuting_covariances():
    # Random 16-dim SPD covariances that do not commute: a wrong square root such as the
    # elementwise sqrt of S1 * S2 or sqrt(S1) @ sqrt(S2) agrees with the true one only when
    # S1 S2 = S2 S1 (the closed-form tests above); here, with equal means, it misses by 7% or more.
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    s1, s2 = x @ x.T / 16 + 0.1 * np.eye(16), y @ y.T / 16 + 0.1 * np.eye(16)
    assert np.abs(s1 @ s2 - s2 @ s1).max() > 0.1
    covmean = _sqrtm_denman_beavers(s1 @ s2)
    assert np.abs(covmean @ covmean - s1 @ s2).max() < 1e-10  # the reference is a square root
    tr_covmean = np.trace(covmean)
    assert frechet_distance(np.zeros(16), s1, np.zeros(16), s2) == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * tr_covmean, rel=1e-9)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_set_with_itself_is_zero_and_shift_adds_squared_norm():
    feats = np.random.default_rng(2).normal(size=(500, 16))
    assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-8)
    shift = np.full(16, 0.5)
    assert fid_from_features(feats, feats + shift) == pytest.approx(16 * 0.25, rel=1e-8)
    # Rank-deficient covariances (fewer samples than dimensions) stay finite and >= 0.
    few = feats[:8]
    assert 0.0 <= fid_from_features(few, few) < 1e-8


def test_fid_rejects_mismatched_feature_spaces():
    mu, sigma = feature_statistics(np.random.default_rng(3).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="same --metric"):
        frechet_distance(mu, sigma, mu[:3], sigma[:3, :3])


def test_inception_score_extremes():
    confident = np.eye(10)[np.arange(1000) % 10] * 50.0  # one sure class per image, all classes
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6
    collapsed = np.tile(np.eye(10)[3] * 50.0, (100, 1))  # every image the same class
    assert inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
    unsure = np.zeros((100, 10))  # uniform predictions
    assert inception_score(unsure)[0] == pytest.approx(1.0, abs=1e-9)


def test_precision_recall_on_toy_manifolds():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(400, 2))
    same = rng.normal(size=(400, 2))
    p, r = precision_recall(real, same)
    assert p > 0.85 and r > 0.85
    far = rng.normal(size=(400, 2)) + 50.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # Mode collapse: samples cover only the x > 1 part of the real cloud. Every sample is
    # realistic (precision stays high) but most of the real manifold is missed (low recall).
    collapsed = real[real[:, 0] > 1.0] + rng.normal(scale=0.01, size=(int((real[:, 0] > 1).sum()),
                                                                      2))
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.4


def test_precision_recall_needs_more_than_k_points():
    with pytest.raises(ValueError, match="needs more than 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_too_few_samples_names_the_numbers():
    msg = too_few_samples(500, 2048)
    assert "500 samples" in msg and "10240" in msg
    assert too_few_samples(50000, 2048) is None
