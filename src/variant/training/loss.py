"""The official VAR training loss and the per-scale metrics logged next to it.

Loss: cross-entropy of every token of every scale (teacher forcing), averaged over tokens, so a
scale's share of the loss is pn^2 / L (official `loss_weight = 1 / L`). Metrics: per-scale mean
cross-entropy without label smoothing and top-1 accuracy, as sums so that micro-batches and ranks
can be added before dividing.

Shape legend (the package's, see variant/__init__.py): B batch, L all tokens, V vocab, K scales.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def token_cross_entropy(logits_BLV: torch.Tensor, gt_BL: torch.Tensor,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-token cross-entropy (B, L) in fp32."""
    B, L, V = logits_BLV.shape
    ce = F.cross_entropy(logits_BLV.reshape(-1, V).float(), gt_BL.reshape(-1),
                         label_smoothing=label_smoothing, reduction="none")
    return ce.view(B, L)


def var_loss(ce_BL: torch.Tensor) -> torch.Tensor:
    """Scalar loss: every token weighs 1 / L, averaged over the batch (official reduction)."""
    return ce_BL.mean(dim=-1).mean()


@torch.no_grad()
def scale_sums(logits_BLV: torch.Tensor, gt_BL: torch.Tensor, ce_BL: torch.Tensor | None,
               begin_ends: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Per-scale [cross-entropy sum, correct count, token count] as a float64 tensor (3, K).

    `ce_BL` is the unsmoothed per-token cross-entropy if the caller already has it (no label
    smoothing); otherwise it is recomputed here.
    """
    if ce_BL is None:
        ce_BL = token_cross_entropy(logits_BLV.detach(), gt_BL)
    B = gt_BL.shape[0]
    scale_L = torch.cat([torch.full((end - begin,), k, device=gt_BL.device)
                         for k, (begin, end) in enumerate(begin_ends)])
    per_token_3L = torch.stack([
        ce_BL.detach().double().sum(0),
        logits_BLV.detach().argmax(dim=-1).eq(gt_BL).double().sum(0),
        torch.full_like(scale_L, B, dtype=torch.float64),
    ])
    sums_3K = per_token_3L.new_zeros(3, len(begin_ends))
    return sums_3K.index_add_(1, scale_L, per_token_3L)


def summarize(sums_3K: torch.Tensor) -> dict[str, list[float] | float]:
    """Means from `scale_sums` (possibly added over micro-batches and ranks)."""
    ce, correct, count = sums_3K.double().cpu().unbind(0)
    count = count.clamp_min(1)
    return {
        "loss": float(ce.sum() / count.sum()),
        "acc": float(correct.sum() / count.sum()),
        "scale_loss": (ce / count).tolist(),
        "scale_acc": (correct / count).tolist(),
    }
