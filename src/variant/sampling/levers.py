"""Inference levers that stack with a depth plan: guidance levers, token pruning, KV retention.

All are off by default and only change sampling (teacher-forced training never sees them).
Scale numbers here are 0-based scale indices k = 0 .. K-1 (the plan specs' `r7-r10` ranges are
1-based, as in the paper's figures).

- `cfg_stop=k` (Switti): scales >= k sample from the conditional logits only. The guiding rows
  run scales 0..k-1 and nothing after, so their keys/values are never kept past scale k-1.
- `guide_plan=PLAN`, `guide_class='null' | 'same'`: the guiding rows run their own depth plan,
  with the null class (classifier-free guidance) or the image's own class (autoguidance by a
  weaker subnet, after Karras et al., 2024). Logits combine as in the official sampler:
  `(1 + t) * cond - t * guide`, t ramping linearly with the scale.
- `prune=(keep, k0)` (after FastVAR's cached token pruning): at scales >= k0 only
  `max(1, round(keep * l))` of the scale's l positions run the layers; the others take the
  previous scale's final hidden states, area-upsampled, and still get logits and tokens.
  Pruned positions write no keys/values, so later scales attend to the kept ones only.
- `kv_keep=(first, recent)` (after AMS-KV / ScaleKV): scale k attends to scales 0..first-1, the
  `recent` scales before it and itself; a scale's keys/values are freed once no later scale may
  read them.

The pivotal-token score is FastVAR's, `||x_i - mean_j x_j||^2` (high-frequency energy: how far a
position is from the scale's average), computed on the scale's tokenizer-side input (B, l, C):
the content the model must refine. FastVAR scores the transformer's input; in VAR that input
carries an additive position embedding that is the same for every image, which would bias the
choice towards the same positions whatever the content, so the content alone is scored.

`Levers.build` normalises: settings that change nothing (cfg_stop >= K, keep = 1, a retention
window covering every scale, a guide plan equal to the plan) are dropped, and when nothing is
left it returns None, so neutral settings run exactly the plain sampler.
Shape legend (the package's, see variant/__init__.py): B images, l tokens of one scale, C
tokenizer channels, D width, K scales.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .plan import DepthPlan

GUIDE_CLASSES = ("null", "same")
_PRUNE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*@\s*(\d+)\s*$", re.IGNORECASE)
_KV_KEEP = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")


def parse_prune(value: Any) -> tuple[float, int] | None:
    """'0.5@8' or (0.5, 8) -> (keep, from_scale); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _PRUNE.match(value)
        if m is None:
            raise ValueError(f"cannot read prune {value!r}: use KEEP@SCALE, the fraction of "
                             "positions that run the layers and the first (0-based) scale "
                             "pruned, e.g. 0.5@8.")
        value = (float(m.group(1)), int(m.group(2)))
    keep, start = value
    if not 0 < float(keep) <= 1 or int(start) < 0:
        raise ValueError(f"prune needs 0 < KEEP <= 1 and SCALE >= 0, got {keep}@{start}; "
                         "e.g. 0.5@8.")
    return float(keep), int(start)


def parse_kv_keep(value: Any) -> tuple[int, int] | None:
    """'1,2' or (1, 2) -> (first, recent); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _KV_KEEP.match(value)
        if m is None:
            raise ValueError(f"cannot read kv_keep {value!r}: use FIRST,RECENT, the number of "
                             "first scales and of recent scales every scale attends to, e.g. "
                             "1,2.")
        value = (int(m.group(1)), int(m.group(2)))
    first, recent = (int(v) for v in value)
    if first < 0 or recent < 0:
        raise ValueError(f"kv_keep needs FIRST >= 0 and RECENT >= 0, got {first},{recent}; "
                         "e.g. 1,2.")
    return first, recent


def check_guide_class(value: str) -> str:
    if value not in GUIDE_CLASSES:
        raise ValueError(f"guide_class must be 'null' (classifier-free guidance) or 'same' "
                         f"(autoguidance by the guide plan), got {value!r}.")
    return value


def kept_tokens(num_tokens: int, keep: float) -> int:
    """Positions of a scale of `num_tokens` that run the layers under pruning `keep`."""
    return max(1, min(num_tokens, round(keep * num_tokens)))


@dataclass(frozen=True)
class Branch:
    """One group of transformer rows: the images' conditional rows or their guiding rows."""

    plan: DepthPlan  # the layers it runs, truncated to the scales it runs
    guiding: bool  # the guiding rows (null or same class)
    stop: int  # scales 0..stop-1 run


@dataclass(frozen=True)
class Levers:
    """The levers of one sampling call, normalised against a model's K scales and a plan."""

    num_scales: int
    guided: bool  # classifier-free guidance is on (cfg > 0): there are guiding rows
    cfg_stop: int  # first scale without guidance; num_scales: never
    guide_plan: DepthPlan | None  # None: the plan itself
    guide_class: str
    prune: tuple[float, int] | None
    kv_keep: tuple[int, int] | None

    @classmethod
    def build(cls, *, num_scales: int, patch_nums: Sequence[int], plan: DepthPlan, guided: bool,
              cfg_stop: int | None, guide_plan: DepthPlan | None, guide_class: str,
              prune: tuple[float, int] | None, kv_keep: tuple[int, int] | None) -> Levers | None:
        """Check and normalise; None when every lever is neutral (the plain sampler runs)."""
        K = num_scales
        check_guide_class(guide_class)
        guidance = [name for name, on in (("cfg_stop", cfg_stop is not None),
                                          ("guide_plan", guide_plan is not None),
                                          ("guide_class='same'", guide_class == "same")) if on]
        if guidance and not guided:
            raise ValueError(f"{', '.join(guidance)} change(s) the guiding rows, but guidance is "
                             "off (cfg 0); give cfg > 0, e.g. --cfg 1.5, or drop them.")
        if cfg_stop is not None and not 0 <= cfg_stop <= K:
            raise ValueError(f"cfg_stop must be a scale index in 0..{K} (this model has {K} "
                             f"scales; {K}: guidance at every scale), got {cfg_stop}; e.g. "
                             f"cfg_stop={max(0, K - 2)} (spec 'd8+cfgstop{max(0, K - 2)}') "
                             "leaves the last two scales unguided.")
        if prune is not None and not prune[1] < K:
            raise ValueError(f"prune's first pruned scale must be in 0..{K - 1} (this model has "
                             f"{K} scales), got {prune[1]}; e.g. prune=(0.5, {max(0, K - 2)}) "
                             f"(spec 'd8+prune0.5@{max(0, K - 2)}') prunes the last two.")
        stop = K if cfg_stop is None else int(cfg_stop)
        if not guided or stop == 0:  # no guiding rows at all
            guide_plan, guide_class = None, "null"
        if guide_plan is not None and guide_plan.layer_sets[:stop] == plan.layer_sets[:stop]:
            guide_plan = None  # the guiding rows run the same layers at every scale they run
        if guide_class == "same" and guide_plan is None:
            raise ValueError("guide_class 'same' guides the model by itself unless the guiding "
                             "rows run other layers than the plan at some scale before cfg_stop "
                             "(here they would not): give a shallower guide plan, e.g. "
                             "guide_plan='d2' (autoguidance), a later cfg_stop, or use "
                             "guide_class 'null'.")
        if prune is not None:
            keep, start = prune
            if all(kept_tokens(p * p, keep) == p * p for p in patch_nums[start:]):
                prune = None
        if kv_keep is not None and sum(kv_keep) >= K - 1:
            kv_keep = None  # every scale still sees all earlier scales
        if stop == K and guide_plan is None and prune is None and kv_keep is None:
            return None
        return cls(K, guided, stop, guide_plan, guide_class, prune, kv_keep)

    # ---------------------------------------------------------------- structure
    def branches(self, plan: DepthPlan) -> list[Branch]:
        """The conditional rows under `plan`, then (with guidance) the guiding rows under the
        guide plan for scales 0..cfg_stop-1. Every branch runs B rows."""
        out = [Branch(plan, False, self.num_scales)]
        if self.guided and self.cfg_stop > 0:
            guide = self.guide_plan or plan
            out.append(Branch(truncate(guide, self.cfg_stop), True, self.cfg_stop))
        return out

    def tokens_run(self, scale_index: int, num_tokens: int) -> int:
        """Positions of scale k that run the layers (and write keys/values)."""
        if self.prune is None or scale_index < self.prune[1]:
            return num_tokens
        return kept_tokens(num_tokens, self.prune[0])

    def sizes(self, patch_nums: Sequence[int]) -> list[int]:
        """Tokens written to the cache per scale."""
        return [self.tokens_run(k, p * p) for k, p in enumerate(patch_nums)]

    def visible(self, source: int, scale_index: int) -> bool:
        """Whether scale `scale_index` attends to the keys/values of scale `source` (<= it)."""
        if self.kv_keep is None or source == scale_index:
            return source <= scale_index
        first, recent = self.kv_keep
        return source < first or scale_index - recent <= source < scale_index

    def context_tokens(self, plan: DepthPlan, sizes: Sequence[int], layer: int,
                       scale_index: int) -> int:
        """Tokens `layer` attends to at scale k (it runs there): the scale's own `sizes[k]` and
        those of its earlier scales under `plan` that k may read."""
        return sizes[scale_index] + sum(
            sizes[s] for s in plan.scales_of_layer(layer)
            if s < scale_index and self.visible(s, scale_index))

    def spec_parts(self) -> list[str]:
        """The lever parts of a configuration spec (sampling.configuration), in canonical order."""
        parts = []
        if self.cfg_stop < self.num_scales:
            parts.append(f"cfgstop{self.cfg_stop}")
        if self.guide_plan is not None:
            word = "autoguide" if self.guide_class == "same" else "guide"
            parts.append(f"{word}={self.guide_plan.name}")
        if self.prune is not None:
            parts.append(f"prune{self.prune[0]!r}@{self.prune[1]}")
        if self.kv_keep is not None:
            parts.append(f"kv{self.kv_keep[0]},{self.kv_keep[1]}")
        return parts


def run_together(groups: Sequence, scale_index: int) -> list[list]:
    """The row groups (anything with `.plan` and `.stop`, None: every scale) that run scale k,
    consecutive ones with the same layers there batched into one pass (the weights are read
    once): the sampler's rule, which the latency model follows."""
    batches: list[list] = []
    for g in groups:
        if g.stop is not None and scale_index >= g.stop:
            continue
        if batches and batches[-1][0].plan.layers_at(scale_index) == g.plan.layers_at(scale_index):
            batches[-1].append(g)
        else:
            batches.append([g])
    return batches


def truncate(plan: DepthPlan, stop: int) -> DepthPlan:
    """`plan` cut to its first `stop` scales (the guiding rows' plan under cfg_stop)."""
    if stop == plan.num_scales:
        return plan
    return type(plan)(plan.layer_sets[:stop], plan.total_depth)


# -------------------------------------------------------------------- pruning
def pivotal_positions(x_BlC: torch.Tensor, num_kept: int) -> torch.Tensor:
    """The `num_kept` positions of highest FastVAR score (module docstring), raster order
    -> (B, num_kept) int64."""
    score_Bl = (x_BlC.float() - x_BlC.float().mean(1, keepdim=True)).square().sum(-1)
    return score_Bl.topk(num_kept, dim=1, sorted=False).indices.sort(dim=1).values


def gather_positions(x_RlD: torch.Tensor, idx_Bn: torch.Tensor) -> torch.Tensor:
    """The rows' tokens at `idx_Bn` -> (R, n, D); R a multiple of B (rows repeat the images)."""
    idx = _rows(idx_Bn, x_RlD.shape[0])
    return x_RlD.gather(1, idx.unsqueeze(-1).expand(-1, -1, x_RlD.shape[-1]))


def restore_positions(h_RnD: torch.Tensor, idx_Bn: torch.Tensor, h_prev_RmD: torch.Tensor,
                      side: int) -> torch.Tensor:
    """Scale the previous scale's final hidden states (R, m, D) up to side x side (area, as
    FastVAR restores), then put the computed positions back -> (R, side * side, D)."""
    R, m, D = h_prev_RmD.shape
    prev = round(m ** 0.5)
    grid = h_prev_RmD.to(h_RnD.dtype).transpose(1, 2).reshape(R, D, prev, prev)
    full = F.interpolate(grid, size=(side, side), mode="area").flatten(2).transpose(1, 2)
    idx = _rows(idx_Bn, R)
    return full.contiguous().scatter(1, idx.unsqueeze(-1).expand(-1, -1, D), h_RnD)


def _rows(idx_Bn: torch.Tensor, rows: int) -> torch.Tensor:
    return idx_Bn if idx_Bn.shape[0] == rows else idx_Bn.repeat(rows // idx_Bn.shape[0], 1)
