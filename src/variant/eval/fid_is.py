"""FID, Inception Score and precision/recall computed from features (any feature extractor).

The math is here and only needs numpy and torch, so it is tested without any network:
- `frechet_distance`: ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)). The trace of the
  matrix square root is the sum of the square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2),
  a symmetric PSD matrix (similar to S1 S2), so two `eigh` calls in float64 suffice; no complex
  `sqrtm` and no scipy. Tiny negative eigenvalues from rounding are clipped to zero.
- `inception_score`: exp(E_x KL(p(y|x) || p(y))) averaged over `splits` (as torch-fidelity and
  the ADM suite: 10 splits).
- `precision_recall`: the k-NN manifold estimate of Kynkaenniemi et al. (2019), k = 3 as in ADM:
  a sample counts as "precise" if it lies inside some reference feature's k-NN ball, a reference
  feature counts as "recalled" if it lies inside some sample's k-NN ball.
Legend (the package's, see variant/__init__.py): N samples, M reference samples, F feature dim,
Y classes.
"""

from __future__ import annotations

import numpy as np
import torch

# FID is biased upwards for small N (and the covariance is singular below F samples); below this
# many samples per feature dimension the CLI warns. Inception (F = 2048): 10 240 samples.
MIN_SAMPLES_PER_DIM = 5


def feature_statistics(feats_NF: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean (F,), unbiased covariance (F, F)) in float64."""
    x = _as_float64(feats_NF)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a 2-D array of at least 2 feature rows, got shape {x.shape}.")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(sym: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((sym + sym.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"statistics of different feature spaces: mu {mu1.shape} vs {mu2.shape}, sigma "
            f"{sigma1.shape} vs {sigma2.shape}; compute both with the same --metric.")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return float(max(fid, 0.0))


def fid_from_features(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(feats_a), *feature_statistics(feats_b))


def inception_score(logits_NY: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` of exp(E KL(p(y|x) || p(y))), from unnormalised logits."""
    logits = torch.as_tensor(np.asarray(logits_NY), dtype=torch.float64)
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"need logits of shape (N, C), got {tuple(logits.shape)}.")
    splits = max(1, min(int(splits), logits.shape[0]))
    log_p = logits.log_softmax(dim=1)
    scores = []
    for chunk in log_p.tensor_split(splits):
        log_marginal = chunk.exp().mean(dim=0).log()
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(feats: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (N,)."""
    radii = []
    for start in range(0, feats.shape[0], block):
        d = torch.cdist(feats[start:start + block], feats)
        # The row itself is at distance 0 and comes first: the k-th neighbour is index k.
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _coverage(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor,
              block: int) -> float:
    """Fraction of queries inside at least one ball (points[i], radii[i])."""
    inside = 0
    for start in range(0, queries.shape[0], block):
        d = torch.cdist(queries[start:start + block], points)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(real_MF, fake_NF, k: int = 3, block: int = 4096,
                     device=None) -> tuple[float, float]:
    """Improved precision and recall (Kynkaenniemi et al. 2019) with k-NN manifolds.

    Distances are computed `block` rows at a time (50 000 x 50 000 pairs at F = 2048 are ~10
    TFLOP: pass device="cuda" when there is one).
    """
    real = torch.as_tensor(np.asarray(real_MF), dtype=torch.float32, device=device)
    fake = torch.as_tensor(np.asarray(fake_NF), dtype=torch.float32, device=device)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need two (N, F) feature arrays of the same F, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}.")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per side, got "
                         f"{real.shape[0]} reference and {fake.shape[0]} samples.")
    real_radii = _kth_neighbour_radii(real, k, block)
    fake_radii = _kth_neighbour_radii(fake, k, block)
    precision = _coverage(fake, real, real_radii, block)
    recall = _coverage(real, fake, fake_radii, block)
    return precision, recall


def too_few_samples(num_samples: int, feature_dim: int) -> str | None:
    """A warning text when `num_samples` is too small for a stable FID, else None."""
    need = MIN_SAMPLES_PER_DIM * feature_dim
    if num_samples >= need:
        return None
    return (f"FID from {num_samples} samples is unstable and biased upwards (features have "
            f"{feature_dim} dimensions; use at least {need}, the official protocol uses 50000); "
            "compare such FIDs only with each other, at the same sample count.")


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
