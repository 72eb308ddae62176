"""Budget planner: the deepest depth plan whose predicted KV cache, memory and latency fit.

Predictions come from the accounting, not from running the model:
- KV bytes: the lean cache's peak from `models.cost.CostModel` (rows = batch doubled by
  classifier-free guidance);
- memory: weights (at their precision: the quantised linears' exact int8/fp8 data and scales,
  variant/precision.py; + the 16-bit copies autocast keeps of the float ones) + the larger of
  (KV + the transformer's activations at the last scale) and the decoder's activations (the
  cache is released before decoding), + on CPU the resident size of the Python/torch runtime;
- latency: a profile measured by `variant bench --profile` on this machine (per scale: seconds
  per layer and the non-block overhead; decoder seconds), scaled linearly to the batch. Under
  inference levers a layer step runs fewer rows, fewer tokens or a shorter context; every layer
  step of the work (sampling/work.py) takes the profile's time for its scale times the ratio of
  a roofline-style step model `a + b * rows * n + c * rows * n * m` (a: reading the layer's
  weights, b: the per-token work, c: attention over m tokens), fitted to the profile's own
  per-scale times (`StepModel`). Row groups that run the same layers share one weight read, as
  the sampler batches them.

`variant bench` measures all three for the chosen plan, so a prediction can be confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..jsonfile import read_json
from ..models.cost import CostModel
from ..models.var import VAR
from ..models.vqvae import VQVAE
from ..precision import quantised_bytes, quantised_layers
from ..sampling.attention import MAX_SCORE_BYTES
from ..sampling.lever import LEVERS
from ..sampling.levers import Levers
from ..sampling.plan import DepthPlan, paper_family, resolve_bridge
from ..sampling.settings import SamplingConfig
from ..sampling.work import steps
from ..units import dtype_bytes, fmt_bytes
from .bench import PROFILE_FORMAT, current_rss_bytes
from .choice import Budget, Option
from .profile_schema import profile_problem


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One sampling call to plan for: its batch, sampling settings and device."""

    batch: int = 1
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"a workload needs a batch of at least 1 image, got {self.batch}.")

    @property
    def dtype(self) -> str:
        return self.sampling.dtype

    @property
    def use_cfg(self) -> bool:
        return self.sampling.use_cfg

    @property
    def rows(self) -> int:
        return self.sampling.rows(self.batch)

    @property
    def element_size(self) -> int:
        return dtype_bytes(self.dtype)

    def cost(self, var_config) -> CostModel:
        return CostModel(var_config, self.dtype, self.rows)


@dataclass
class Prediction:
    plan: DepthPlan
    kv_bytes: int
    memory_bytes: int
    latency_s: float | None
    parts: dict = field(default_factory=dict)  # memory breakdown, bytes
    weights: str | None = None  # the weight precision (None: full)
    kv_precision: str | None = None  # the KV cache's storage format (None: the compute dtype)

    @property
    def spec(self) -> str:
        """The configuration spec: the plan, with its precisions' parts (canonical order)."""
        values = {"weights": self.weights, "kv_precision":
                  None if self.kv_precision is None else (self.kv_precision, 0)}
        return "+".join([self.plan.name, *(p for name in LEVERS if name in values
                                            and (p := LEVERS[name].spec_part(values)))])

    @property
    def costs(self) -> dict[str, float | None]:
        return {"latency": self.latency_s, "kv": self.kv_bytes, "memory": self.memory_bytes}

    def over(self, budget: Budget) -> list[str]:
        """The limits this plan exceeds, as readable phrases."""
        return budget.over(self.costs)


def model_bytes(var_config, vae_config, weights: str | None = None) -> int:
    """Parameter + buffer bytes of the VAR and its VQVAE, counted on the meta device, with the
    linear layers `quantize_weights` quantises at precision `weights` (None: full)."""
    with torch.device("meta"):
        modules = (VAR(var_config), VQVAE(vae_config))
    total = sum(t.numel() * t.element_size() for m in modules
                for t in (*m.parameters(), *m.buffers()))
    if weights is None:
        return total
    as_float, quantised = quantised_weight_bytes(var_config, weights)
    return total - as_float + quantised


def quantised_weight_bytes(var_config, weights: str) -> tuple[int, int]:
    """(bytes in full precision, bytes at `weights`) of the weights `quantize_weights`
    quantises: int8/fp8 data plus per-row scales (and int8 zero points)."""
    with torch.device("meta"):
        layers = [m.weight for _, m in quantised_layers(VAR(var_config))]
    return (sum(w.numel() * w.element_size() for w in layers),
            sum(quantised_bytes(*w.shape, weights) for w in layers))


def transformer_activation_bytes(var_config, workload: Workload) -> int:
    """A conservative estimate of the live activations while the last scale runs one layer."""
    c, e, rows = var_config, workload.element_size, workload.rows
    q, n = c.patch_nums[-1] ** 2, c.seq_len  # queries of the last scale, worst-case context
    hidden = workload.cost(c).ffn_width
    stream = rows * q * c.width * 4 * 4  # fp32 residual, LayerNorm, attention and FFN outputs
    qkv = rows * q * c.width * (3 * e + 2 * 4)  # fused projection + normalised q, k (fp32)
    ffn = rows * q * hidden * e * 2  # fc1 and GELU outputs
    # fp32 scores and their exponentials; the two-part attention of a layer's last scale
    # chunks the batch to keep one score matrix under MAX_SCORE_BYTES (256 MiB).
    scores = min(rows * c.heads * q * n * 4, MAX_SCORE_BYTES) * 2
    # fp32 logits of all rows; per image: guided logits, sorted values and indices, the top-p
    # mask and its scatter, probabilities
    logits = rows * q * c.V * 4 + workload.batch * q * c.V * (4 + 4 + 8 + 1 + 1 + 4)
    return stream + qkv + ffn + max(scores, logits)  # attention and the head do not overlap


def decoder_activation_bytes(vae_config, workload: Workload) -> int:
    """Live decoder memory: a few copies of its largest feature map, per image."""
    ch, mult = vae_config.ch, vae_config.ch_mult
    side = vae_config.patch_nums[-1]
    largest = 0
    for i in reversed(range(len(mult))):  # level i runs at side * 2^(last - i)
        res = side * 2 ** (len(mult) - 1 - i)
        width = max(ch * mult[i], ch * mult[min(i + 1, len(mult) - 1)])
        largest = max(largest, width * res * res)
    # Calibrated on VAR-d16's VQVAE on CPU (peak RSS during decoding, batch 2): about 0.53 GiB
    # in fp32 and 0.31 GiB in bf16, i.e. ~7 fp32 / ~4.5 bf16 copies of the largest feature map
    # (block input, GroupNorm output in fp32, conv outputs, upsampled map, allocator slack).
    return workload.batch * largest * (2 * 4 + 5 * workload.element_size)


class Predictor:
    """Predicts KV bytes, memory and (given a profile) latency of any plan for one workload."""

    def __init__(self, var_config, vae_config, workload: Workload, profile: dict | None = None,
                 runtime_bytes: int = 0):
        self.var_config, self.workload, self.profile = var_config, workload, profile
        self.cost = workload.cost(var_config)
        self.vae_config = vae_config
        self.weights = self.weight_bytes(None)
        self._weights = {None: self.weights}  # by precision, computed once
        self._kv: dict[tuple, int] = {}  # by plan
        self.act_transformer = transformer_activation_bytes(var_config, workload)
        self.act_decoder = decoder_activation_bytes(vae_config, workload)
        self.runtime = runtime_bytes
        if profile is not None:
            check_profile(profile, var_config, workload)

    def weight_bytes(self, weights: str | None) -> int:
        """The model's bytes at weight precision `weights`, with the 16-bit copies autocast
        keeps of the float weights it casts (the quantised ones dequantise in their matmul)."""
        full = model_bytes(self.var_config, self.vae_config)
        total = model_bytes(self.var_config, self.vae_config, weights)
        if self.workload.element_size < 4:
            as_float = quantised_weight_bytes(self.var_config, weights)[0] if weights else 0
            total += (full - as_float) * self.workload.element_size // 4
        return total

    def kv_bytes(self, plan: DepthPlan, kv_precision: str | None = None) -> int:
        """The plan's KV peak with keys/values stored at `kv_precision` (None: the compute
        dtype; weight precisions do not change it)."""
        key = (plan.layer_sets, kv_precision)
        if key not in self._kv:
            levers = None if kv_precision is None else Levers.build(
                {"kv_precision": (kv_precision, 0)}, plan, self.var_config.patch_nums,
                self.workload.use_cfg)
            self._kv[key] = self.cost.kv_peak_bytes(plan, levers)
        return self._kv[key]

    def latency(self, plan: DepthPlan, levers: Levers | None = None) -> float | None:
        if self.profile is None:
            return None
        p = self.profile
        row_scale = self.workload.rows / p["rows"]
        image_scale = self.workload.batch / p["settings"]["batch"]
        transformer = transformer_seconds(p, plan, levers, self.var_config.patch_nums)
        return transformer * row_scale + p["decoder_seconds"] * image_scale

    def predict(self, plan: DepthPlan, weights: str | None = None,
                kv_precision: str | None = None) -> Prediction:
        """The costs of `plan` on weights of precision `weights` (None: full), its KV stored at
        `kv_precision` (None: the compute dtype)."""
        kv = self.kv_bytes(plan, kv_precision)
        live = max(kv + self.act_transformer, self.act_decoder)
        if weights not in self._weights:
            self._weights[weights] = self.weight_bytes(weights)
        weight = self._weights[weights]
        parts = {"weights": weight, "kv": kv, "transformer_activations":
                 self.act_transformer, "decoder_activations": self.act_decoder,
                 "runtime": self.runtime}
        # profiles time full precision
        latency = None if weights or kv_precision else self.latency(plan)
        return Prediction(plan, kv, weight + live + self.runtime, latency, parts, weights,
                          kv_precision)


def transformer_seconds(profile: dict, plan: DepthPlan, levers: Levers | None,
                        patch_nums) -> float:
    """Predicted transformer seconds of `plan` (and `levers`; None: none set) at the profile's
    batch: per scale the measured overhead, plus every layer step of the work scaled by the
    `StepModel` fitted to the profile."""
    levers = levers or Levers.neutral(plan, len(patch_nums))
    return StepModel.fit(profile).transformer_seconds(profile, levers, patch_nums)


@dataclass(frozen=True)
class StepModel:
    """Seconds of one layer step at a scale: `a + b * rows * n + c * rows * n * m` (n tokens
    run, m tokens attended to), fitted to a full-plan profile by non-negative least squares
    over its K scales (terms whose coefficient would be negative are dropped)."""

    a: float
    b: float
    c: float

    def __call__(self, rows: float, n: float, m: float) -> float:
        return self.a + self.b * rows * n + self.c * rows * n * m

    @classmethod
    def fit(cls, profile: dict) -> StepModel:
        rows, sizes = profile["rows"], [s["tokens"] for s in profile["scales"]]
        context = np.cumsum(sizes)
        X = np.stack([np.ones(len(sizes)), rows * np.asarray(sizes, float),
                      rows * np.asarray(sizes, float) * context], axis=1)
        y = np.asarray([s["seconds_per_layer"] for s in profile["scales"]])
        best = (np.inf, np.zeros(3))
        for keep in ([0, 1, 2], [0, 1], [1, 2], [0, 2], [1], [0]):
            coef = np.linalg.lstsq(X[:, keep], y, rcond=None)[0]
            if (coef < 0).any():
                continue
            full = np.zeros(3)
            full[keep] = coef
            err = float(((X @ full - y) ** 2).sum())
            if err < best[0]:
                best = (err, full)
        return cls(*map(float, best[1]))

    def transformer_seconds(self, profile: dict, levers: Levers, patch_nums) -> float:
        """The transformer time of the work of `levers` (sampling/work.py) at the profile's
        batch: per scale its overhead, plus for every layer step the profile's seconds per layer
        at that scale scaled by this model's ratio (rows, tokens and context of the step vs the
        full plan's)."""
        rows_full = profile["rows"]
        if levers.guided and levers.changes_work and not profile["settings"].get("cfg"):
            raise ValueError("the latency profile was measured without guidance (cfg 0) but these "
                             "levers guide; measure a profile with guidance (variant bench "
                             "--profile with the default --cfg).")
        batch = rows_full // 2 if levers.guided else rows_full
        full_sizes = [p * p for p in patch_nums]
        work = {}
        for step in steps(levers, patch_nums, batch):
            work.setdefault(step.scale_index, []).append(step)
        total = 0.0
        for k, scale in enumerate(profile["scales"]):
            total += scale["overhead_seconds"]
            reference = self(rows_full, full_sizes[k], sum(full_sizes[:k + 1]))
            if reference <= 0:
                continue
            per_layer = scale["seconds_per_layer"] / reference
            for step in work.get(k, ()):
                cost = self.a
                for part in step.parts:
                    cost += (self.b * part.rows * part.tokens
                             + self.c * part.rows * part.tokens * part.context)
                total += per_layer * cost
        return total


def check_profile(profile: dict, var_config, workload: Workload) -> None:
    """ValueError unless the profile was measured for this model shape, dtype and device."""
    if profile.get("format") != PROFILE_FORMAT:
        raise ValueError("the latency profile is not a `variant bench --profile` file.")
    m = profile["model"]
    mine = {"depth": var_config.depth, "width": var_config.width,
            "patch_nums": list(var_config.patch_nums)}
    theirs = {k: m[k] for k in mine}
    if mine != theirs:
        raise ValueError(f"the latency profile was measured for a model with {theirs}, not "
                         f"{mine}; measure one with `variant bench --model ... --profile OUT`.")
    if profile["settings"]["dtype"] != workload.dtype:
        raise ValueError(f"the latency profile was measured in {profile['settings']['dtype']}, "
                         f"not {workload.dtype}; plan for {profile['settings']['dtype']} or "
                         "measure a profile in this dtype.")
    if profile["device"].split(":")[0] != workload.device.split(":")[0]:
        raise ValueError(f"the latency profile was measured on {profile['device']}, not "
                         f"{workload.device}.")


def runtime_bytes(device: str | torch.device, weight_bytes: int) -> int:
    """What this process holds besides the weights the predictor counts: on CPU its resident
    size less the weights (0 on CUDA, whose memory the predictor's parts cover)."""
    if torch.device(device).type == "cuda":
        return 0
    return max(0, current_rss_bytes() - weight_bytes)


def check_fits(predictor: Predictor, plans: Sequence[DepthPlan], limit: int | None,
               fix: str, weights: str | None = None) -> None:
    """ValueError before any allocation when the costliest of `plans` (on weights of precision
    `weights`) is predicted to need more memory than `limit` (None: no limit known); `fix` names
    the limit and what to change."""
    if limit is None:
        return
    worst = max((predictor.predict(p, weights) for p in plans), key=lambda p: p.memory_bytes)
    if worst.memory_bytes > limit:
        raise ValueError(
            f"this request needs about {fmt_bytes(worst.memory_bytes)} ({worst.plan.name}: "
            f"weights, KV cache and activations for {predictor.workload.batch} images), over "
            f"{fix}")


def load_profile(path: str | Path) -> dict:
    path = Path(path)
    hint = "write one with `variant bench --model ... --profile OUT.json`"
    profile = read_json(path, "latency profile", hint=hint)
    if not isinstance(profile, dict):
        raise ValueError(f"{path} is not a latency profile (a JSON object); {hint}.")
    problem = profile_problem(profile) if profile.get("format") == PROFILE_FORMAT else None
    if problem:
        raise ValueError(f"latency profile {path} is damaged: {problem}; {hint}.")
    return profile


def candidate_plans(depth: int, num_scales: int, bridge: int | None = None, subnets=None,
                    pin_bridge: bool = False) -> list[DepthPlan]:
    """Plans from the most to the least capable: the full network; every subnet depth (deepest
    first) with the bridge (None: the default); then smaller bridges, down to 0, unless the
    bridge is pinned."""
    depths = sorted({int(d) for d in (subnets or range(2, depth))}, reverse=True)
    bad = [d for d in depths if not 1 <= d < depth]
    if bad:
        raise ValueError(f"subnet depths must be in 1..{depth - 1}, got {bad}.")
    bridge = resolve_bridge(bridge, num_scales)
    bridges = [bridge] if pin_bridge else list(range(bridge, -1, -1))
    plans = paper_family(depth, num_scales, depths, bridges[0])
    for b in bridges[1:]:
        plans += paper_family(depth, num_scales, depths, b)[1:]
    return plans


def predicted_options(predictor: Predictor, candidates: Sequence[DepthPlan],
                      precisions: Sequence[str] = (),
                      kv_precisions: Sequence[str] = ()) -> list[Option]:
    """The candidates (most capable first) with their predicted costs, for `choice.choose`;
    each followed by itself at every weight precision of `precisions`, then with its KV cache
    at every format of `kv_precisions` (full-precision weights first, then each of
    `precisions`): quantised variants rank below the same plan at full precision and above the
    next shallower plan."""
    variants = [(w, None) for w in (None, *precisions)] + [
        (w, kv) for kv in kv_precisions for w in (None, *precisions)]
    predictions = [predictor.predict(plan, weights, kv) for plan in candidates
                   for weights, kv in variants]
    return [Option(p.spec, p.costs, None, p) for p in predictions]
