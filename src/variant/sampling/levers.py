"""The inference levers that stack with a depth plan, each declared once (sampling/lever.py).

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
- `kv_precision=(format, k0)` (sampling/kv_quant.py): keys/values of scales >= k0 are stored in
  int8 or fp8 with per-(token, head) scales, and read back in the compute dtype.

The pivotal-token score is FastVAR's, `||x_i - mean_j x_j||^2` (high-frequency energy: how far a
position is from the scale's average), computed on the scale's tokenizer-side input (B, l, C):
the content the model must refine. FastVAR scores the transformer's input; in VAR that input
carries an additive position embedding that is the same for every image, which would bias the
choice towards the same positions whatever the content, so the content alone is scored.

`Levers.build` normalises: settings that change nothing (cfg_stop >= K, keep = 1, a retention
window covering every scale, a guide plan equal to the plan) become neutral, and with every
lever neutral the conditional and guiding rows run as one group: exactly the plain sampler.
Shape legend (the package's, see variant/__init__.py): B images, l tokens of one scale, C
tokenizer channels, D width, K scales.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .kv_quant import KVPrecision
from .lever import LEVERS, Lever, LeverContext, PlanShape, declare
from .plan import DepthPlan
from .work import Group, truncate


def _guide(groups: list[Group], **changes) -> list[Group]:
    return [dataclasses.replace(g, **changes) if g.guiding else g for g in groups]


def _late(num_scales: int) -> int:
    return max(1, num_scales - 2)


class CfgStop(Lever):
    name, spec_syntax, metavar, flag_type, guides = "cfg_stop", "cfgstopK", "K", int, True
    spec = re.compile(r"^cfgstop(\d{1,9})$", re.IGNORECASE)
    help = ("scales >= K sample from the conditional rows only, the guiding rows' KV freed "
            "(Switti); e.g. --cfg-stop 8")
    example, families = "d8+cfgstop8", ("cfg-stop",)

    def read(self, value):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise ValueError(f"cfg_stop must be a 0-based scale index (an int >= 0), got "
                             f"{value!r}; e.g. cfg_stop=8 leaves the last two of 10 scales "
                             "unguided.")
        return value

    def spec_part(self, values):
        return None if values[self.name] is None else f"cfgstop{values[self.name]}"

    def grid(self, num_scales, subnets):
        return {"full": [f"cfgstop{_late(num_scales)}"],
                "subnets": [f"cfgstop{_late(num_scales)}"]}

    def normalise(self, value, context: LeverContext):
        K = context.num_scales
        if value is None:
            return None
        if not 0 <= value <= K:
            raise ValueError(f"cfg_stop must be a scale index in 0..{K} (this model has {K} "
                             f"scales; {K}: guidance at every scale), got {value}; e.g. "
                             f"cfg_stop={max(0, K - 2)} (spec 'd8+cfgstop{max(0, K - 2)}') "
                             "leaves the last two scales unguided.")
        return None if value == K else value

    def groups(self, value, groups, context):
        if value == 0:  # no guiding rows at all
            return [g for g in groups if not g.guiding]
        return [dataclasses.replace(g, stop=value, plan=truncate(g.plan, value)) if g.guiding
                else g for g in groups]


class GuidePlan(Lever):
    name, spec_syntax, metavar, guides = "guide_plan", "guide=PLAN, autoguide=PLAN", "PLAN", True
    spec = re.compile(r"^(auto)?guide=(.+)$", re.IGNORECASE)
    help = "depth plan of the guiding rows; e.g. --guide-plan d2"
    example, families = "full+autoguide=d2", ("guide plan", "autoguidance")

    def read(self, value):
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("guide_plan is empty: give a plan spec such as 'd2', or None.")
            return value.strip()
        if value is not None and not isinstance(value, DepthPlan):
            raise ValueError(f"guide_plan must be a DepthPlan or a plan spec such as 'd2', got "
                             f"{value!r}.")
        return value

    def show(self, value):
        return value if isinstance(value, str) else value.name

    to_json = show

    def parse_part(self, part):
        m = self.spec.match(part)
        if m is None:
            return None
        return {self.name: self.read(m.group(2)), "guide_class": "same" if m.group(1) else "null"}

    def spec_part(self, values):
        plan = values[self.name]
        if plan is None:
            return None
        word = "autoguide" if values.get("guide_class") == "same" else "guide"
        return f"{word}={self.show(plan)}"

    def family(self, values):
        return self.families[values.get("guide_class") == "same"]

    def grid(self, num_scales, subnets):
        small = f"d{min(subnets)}"
        return {"full": [f"guide={small}", f"autoguide={small}"],
                "deepest": [f"autoguide={small}"] if len(subnets) > 1 else []}

    def resolve(self, value, shape: PlanShape):
        if value is None or isinstance(value, DepthPlan):
            return value
        try:
            return DepthPlan.from_spec(value, shape.depth, shape.num_scales, shape.bridge)
        except ValueError as err:  # say that the guide plan is at fault, not the plan
            raise ValueError(f"the guide plan {value!r} (guide=, autoguide= or --guide-plan) "
                             f"is not a plan of this model: {err}") from None

    def normalise(self, value, context):
        if value is None:
            return None
        if not isinstance(value, DepthPlan):
            raise ValueError(f"guide_plan {value!r} is not resolved to a plan of this model; "
                             "resolve it with the configuration (Configuration.resolve).")
        stop = _stop(context)
        if stop == 0 or value.layer_sets[:stop] == context.plan.layer_sets[:stop]:
            return None  # the guiding rows run the same layers at every scale they run
        return value

    def groups(self, value, groups, context):
        return [dataclasses.replace(g, plan=truncate(value, g.stop)) if g.guiding else g
                for g in groups]


class GuideClass(Lever):
    name, neutral, choices, guides = "guide_class", "null", ("null", "same"), True
    help = ("class of the guiding rows: null (classifier-free guidance) or same (autoguidance "
            "by the guide plan); e.g. --guide-plan d2 --guide-class same")

    def read(self, value):
        if value not in self.choices:
            raise ValueError(f"guide_class must be 'null' (classifier-free guidance) or 'same' "
                             f"(autoguidance by the guide plan), got {value!r}.")
        return value

    def family(self, values):
        return None  # named with the guide plan's family

    def normalise(self, value, context):
        if value == "null":
            return value
        if _stop(context) == 0:
            return "null"
        if context.values.get("guide_plan") is None:
            raise ValueError("guide_class 'same' guides the model by itself unless the guiding "
                             "rows run other layers than the plan at some scale before cfg_stop "
                             "(here they would not): give a shallower guide plan, e.g. "
                             "guide_plan='d2' (autoguidance), a later cfg_stop, or use "
                             "guide_class 'null'.")
        return value

    def groups(self, value, groups, context):
        return _guide(groups, condition="own")


_PRUNE = re.compile(r"^\s*([0-9]{0,30}\.?[0-9]{1,30}(?:e-?[0-9]{1,3})?)\s*@\s*(\d{1,9})\s*$",
                    re.IGNORECASE)


class Prune(Lever):
    name, spec_syntax, metavar = "prune", "pruneKEEP@SCALE", "KEEP@SCALE"
    spec = re.compile(r"^prune(.+)$", re.IGNORECASE)
    help = ("from scale SCALE on only the fraction KEEP of positions (highest FastVAR score) "
            "run the layers, the rest restored from the previous scale; e.g. --prune 0.5@8")
    example, families = "d8+prune0.5@8", ("pruning",)

    def read(self, value):
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

    def show(self, value):
        return f"{value[0]!r}@{value[1]}"

    def to_json(self, value):
        return list(value)

    def spec_part(self, values):
        return None if values[self.name] is None else "prune" + self.show(values[self.name])

    def grid(self, num_scales, subnets):
        return {"full": [f"prune0.5@{_late(num_scales)}"],
                "subnets": [f"prune0.5@{_late(num_scales)}"]}

    def normalise(self, value, context):
        K = context.num_scales
        if value is None:
            return None
        if not value[1] < K:
            raise ValueError(f"prune's first pruned scale must be in 0..{K - 1} (this model has "
                             f"{K} scales), got {value[1]}; e.g. prune=(0.5, {max(0, K - 2)}) "
                             f"(spec 'd8+prune0.5@{max(0, K - 2)}') prunes the last two.")
        if all(kept_tokens(p * p, value[0]) == p * p for p in context.patch_nums[value[1]:]):
            return None
        return value

    def tokens(self, value, scale_index, num_tokens):
        return num_tokens if scale_index < value[1] else kept_tokens(num_tokens, value[0])


class KVKeep(Lever):
    name, spec_syntax, metavar = "kv_keep", "kvFIRST,RECENT", "FIRST,RECENT"
    spec = re.compile(r"^kv(?:keep)?(\d{1,9}\s*,\s*\d{1,9})$", re.IGNORECASE)
    help = ("each scale attends to the first FIRST scales, the RECENT scales before it and "
            "itself; the rest of the cache is freed; e.g. --kv-keep 1,2")
    example, families = "d8+kv1,2", ("KV retention",)
    _TEXT = re.compile(r"^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$")

    def read(self, value):
        """'1,2' or (1, 2) -> (first, recent); None stays None."""
        if value is None:
            return None
        if isinstance(value, str):
            m = self._TEXT.match(value)
            if m is None:
                raise ValueError(f"cannot read kv_keep {value!r}: use FIRST,RECENT, the number "
                                 "of first scales and of recent scales every scale attends to, "
                                 "e.g. 1,2.")
            value = (int(m.group(1)), int(m.group(2)))
        first, recent = (int(v) for v in value)
        if first < 0 or recent < 0:
            raise ValueError(f"kv_keep needs FIRST >= 0 and RECENT >= 0, got {first},{recent}; "
                             "e.g. 1,2.")
        return first, recent

    def show(self, value):
        return f"{value[0]},{value[1]}"

    def to_json(self, value):
        return list(value)

    def spec_part(self, values):
        return None if values[self.name] is None else "kv" + self.show(values[self.name])

    def grid(self, num_scales, subnets):
        return {"full": ["kv1,2"] if num_scales > 4 else []}

    def normalise(self, value, context):
        if value is not None and sum(value) >= context.num_scales - 1:
            return None  # every scale still sees all earlier scales
        return value

    def visible(self, value, source, scale_index):
        first, recent = value
        return source < first or scale_index - recent <= source < scale_index


for _lever in (CfgStop(), GuidePlan(), GuideClass(), Prune(), KVKeep(), KVPrecision()):
    declare(_lever)


def _stop(context: LeverContext) -> int:
    """The guiding rows' last scale + 1 under the normalised cfg_stop."""
    stop = context.values.get("cfg_stop")
    return context.num_scales if stop is None else stop


def kept_tokens(num_tokens: int, keep: float) -> int:
    """Positions of a scale of `num_tokens` that run the layers under pruning `keep`."""
    return max(1, min(num_tokens, round(keep * num_tokens)))


# ------------------------------------------------------------------------ one call's levers
@dataclass(frozen=True)
class Levers:
    """The levers of one sampling call, normalised against a model's scales and a plan, and the
    row groups they make (sampling/work.py). Every lever neutral: one group, the plain sampler."""

    num_scales: int
    guided: bool  # classifier-free guidance is on (cfg > 0): there are guiding rows
    values: tuple[tuple[str, Any], ...]  # the levers that change anything, declaration order
    groups: tuple[Group, ...]  # conditional rows first

    @classmethod
    def build(cls, settings: Mapping[str, Any], plan: DepthPlan, patch_nums: Sequence[int],
              guided: bool) -> Levers:
        """Check and normalise the lever `settings` (by name; absent ones neutral; values
        naming plans already resolved) for `plan` on a model with these scales."""
        guiding = [LEVERS[n].label(v) for n, v in settings.items()
                   if LEVERS[n].guides and v != LEVERS[n].neutral]
        if guiding and not guided:
            raise ValueError(f"{', '.join(guiding)} change(s) the guiding rows, but guidance is "
                             "off (cfg 0); give cfg > 0, e.g. --cfg 1.5, or drop them.")
        context = LeverContext(tuple(patch_nums), plan, guided, {})
        for name, lever in LEVERS.items():
            context.values[name] = lever.normalise(settings.get(name, lever.neutral), context)
        active = tuple((n, v) for n, v in context.values.items() if v != LEVERS[n].neutral)
        K = len(patch_nums)
        if all(LEVERS[n].acts_at_load for n, _ in active):  # the official layout: conditional
            # then unconditional rows, one group (a load-time lever changes no work)
            return cls(K, guided, active, (Group(plan, K, "own+null" if guided else "own"),))
        groups = [Group(plan, K, "own")] + ([Group(plan, K, "null", True)] if guided else [])
        for name, value in active:
            groups = LEVERS[name].groups(value, groups, context)
        return cls(K, guided, active, tuple(groups))

    @classmethod
    def neutral(cls, plan: DepthPlan, num_scales: int, guided: bool = False) -> Levers:
        """No lever set: the plain sampler's one group."""
        return cls(num_scales, guided, (),
                   (Group(plan, num_scales, "own+null" if guided else "own"),))

    @property
    def is_neutral(self) -> bool:
        return not self.values

    @property
    def changes_work(self) -> bool:
        """Whether a lever that changes the sampler's work is set (not only load-time ones)."""
        return any(not LEVERS[n].acts_at_load for n, _ in self.values)

    def check_model(self, model) -> None:
        """ValueError unless `model` has what the load-time levers ask (its weights)."""
        for name, value in self.values:
            LEVERS[name].check_model(value, model)

    def get(self, name: str) -> Any:
        """A lever's normalised value (its neutral value when it changes nothing)."""
        return dict(self.values).get(name, LEVERS[name].neutral)

    @property
    def restricts_context(self) -> bool:
        """Whether a lever limits the scales a scale attends to (the chunked cache is needed)."""
        return any(LEVERS[n].overrides("visible") for n, _ in self.values)

    @property
    def thins_tokens(self) -> bool:
        """Whether a lever runs fewer positions than a scale has (pivotal positions run)."""
        return any(LEVERS[n].overrides("tokens") for n, _ in self.values)

    def rows(self, group: Group, batch: int) -> int:
        return batch * group.rows_per_image

    def tokens_run(self, scale_index: int, num_tokens: int) -> int:
        """Positions of scale k that run the layers (and write keys/values)."""
        for name, value in self.values:
            num_tokens = LEVERS[name].tokens(value, scale_index, num_tokens)
        return num_tokens

    def sizes(self, patch_nums: Sequence[int]) -> list[int]:
        """Tokens written to the cache per scale."""
        return [self.tokens_run(k, p * p) for k, p in enumerate(patch_nums)]

    def storage(self, scale_index: int) -> str | None:
        """The format scale k's keys/values are stored in (None: the compute dtype)."""
        return next((fmt for name, value in self.values
                     if (fmt := LEVERS[name].storage(value, scale_index)) is not None), None)

    def visible(self, source: int, scale_index: int) -> bool:
        """Whether scale `scale_index` attends to the keys/values of scale `source` (<= it)."""
        if source >= scale_index:
            return source == scale_index
        return all(LEVERS[n].visible(v, source, scale_index) for n, v in self.values)

    def context_tokens(self, plan: DepthPlan, sizes: Sequence[int], layer: int,
                       scale_index: int) -> int:
        """Tokens `layer` attends to at scale k (it runs there): the scale's own `sizes[k]` and
        those of its earlier scales under `plan` that k may read."""
        return sizes[scale_index] + sum(
            sizes[s] for s in plan.scales_of_layer(layer)
            if s < scale_index and self.visible(s, scale_index))

    def spec_parts(self) -> list[str]:
        """The lever parts of a configuration spec, in declaration order."""
        values = {name: self.get(name) for name in LEVERS}
        return [p for lever in LEVERS.values() if (p := lever.spec_part(values))]


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
