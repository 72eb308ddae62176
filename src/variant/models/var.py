"""The VAR transformer as an elastic-depth supernet.

`VAR.forward(label_B, x, plan)` is the teacher-forced pass: layer l processes only the tokens of
the scales whose layer set (under `plan`) contains l, attending block-causally among exactly
those tokens; the other tokens skip the layer. This is the same network the KV-cached sampler
runs, so training and sampling agree under every plan.

Shape legend (the package's, see variant/__init__.py): B batch, R rows of a guided pass, L all
tokens, l tokens of one scale, D width, C tokenizer latent channels (Cvae), V vocab, K scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import PATCH_NUMS_256, VARConfig
from ..sampling.configuration import Configuration
from ..sampling.kv_cache import KVCache
from ..sampling.plan import DepthPlan
from ..sampling.sampler import GenerationResult, generate
from ..sampling.settings import SamplingConfig
from .layers import AdaLNBeforeHead, AdaLNSelfAttn, SharedAdaLin


@dataclass(frozen=True)
class _LayerWork:
    """Tokens one layer processes in the teacher-forced pass under a plan."""

    start: int  # contiguous range [start, stop) when `index` is None
    stop: int
    index: torch.Tensor | None  # gathered token positions otherwise
    attn_bias: torch.Tensor  # (1, 1, n, n) block-causal mask among the processed tokens


@dataclass(frozen=True)
class ScaleContext:
    """The per-row condition of one sampling call (`VAR.start`)."""

    cond_RD: torch.Tensor  # class embedding: the start token and the head's AdaLN condition
    block_cond: torch.Tensor  # what the blocks' AdaLN reads: cond_RD, or its shared projection
    lvl_pos_1LD: torch.Tensor  # scale embedding + position embedding of every token


class VAR(nn.Module):
    def __init__(self, config: VARConfig, vae=None):
        super().__init__()
        self.config = c = config
        self.depth, self.C, self.num_classes = c.depth, c.width, c.num_classes
        self.V, self.Cvae, self.patch_nums = c.V, c.Cvae, c.patch_nums
        self.L, self.first_l = c.seq_len, 1
        self.num_scales = c.num_scales
        self.begin_ends = []
        cur = 0
        for p in c.patch_nums:
            self.begin_ends.append((cur, cur + p * p))
            cur += p * p
        D, std = self.C, math.sqrt(1 / self.C / 3)

        # Parameters directly on the module come first in the state dict, as in the official one.
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, D))
        self.pos_1LC = nn.Parameter(torch.empty(1, self.L, D))
        scale_of_token = torch.cat([torch.full((p * p,), k) for k, p in enumerate(c.patch_nums)])
        self.register_buffer("lvl_1L", scale_of_token.view(1, self.L).contiguous())
        visible = scale_of_token.view(self.L, 1) >= scale_of_token.view(1, self.L)
        bias = torch.where(visible, 0.0, -torch.inf).reshape(1, 1, self.L, self.L)
        self.register_buffer("attn_bias_for_masking", bias.contiguous())
        self.word_embed = nn.Linear(self.Cvae, D)
        self.class_emb = nn.Embedding(self.num_classes + 1, D)  # row num_classes: null class
        self.lvl_embed = nn.Embedding(self.num_scales, D)
        for t in (self.pos_start, self.pos_1LC, self.class_emb.weight, self.lvl_embed.weight):
            nn.init.trunc_normal_(t, mean=0, std=std)
        self.shared_ada_lin = (
            nn.Sequential(nn.SiLU(), SharedAdaLin(D, 6 * D)) if c.shared_aln else nn.Identity()
        )
        rates = [c.drop_path * i / max(1, c.depth - 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            AdaLNSelfAttn(D, c.heads, c.mlp_ratio, c.shared_aln, c.attn_l2_norm, c.norm_eps,
                          rates[i], c.attn_backend)
            for i in range(c.depth)
        )
        self.head_nm = AdaLNBeforeHead(D, c.norm_eps)
        self.head = nn.Linear(D, self.V)
        # The tokenizer is frozen and shared, and official VAR state dicts do not contain it, so
        # it is held as a plain attribute rather than a submodule (kept out of state_dict/.to()).
        self.__dict__["vae"] = vae

    # ------------------------------------------------------------------ helpers
    def attach_vae(self, vae) -> VAR:
        self.__dict__["vae"] = vae
        return self

    def full_plan(self) -> DepthPlan:
        return DepthPlan.full(self.depth, self.num_scales)

    def resolve_plan(self, plan: DepthPlan | str | None) -> DepthPlan:
        """`plan` checked against this model; a spec string ('d8', ...) is parsed with the
        default bridge; None is the full network."""
        if plan is None:
            return self.full_plan()
        if isinstance(plan, str):
            return DepthPlan.from_spec(plan, self.depth, self.num_scales)
        if not isinstance(plan, DepthPlan):
            raise ValueError(
                f"plan must be a variant.DepthPlan, a plan spec or None, got "
                f"{type(plan).__name__}.")
        plan.check(self.depth, self.num_scales)
        return plan

    @property
    def device(self) -> torch.device:
        return self.pos_1LC.device

    @property
    def kv_layout(self) -> tuple[int, int]:
        """(heads, head dim) of the keys/values one layer keeps per token."""
        return self.config.heads, self.config.head_dim

    def condition(self, label_B: torch.Tensor):
        """Class embedding (B, D): both the start token and the AdaLN condition."""
        return self.class_emb(label_B)

    def get_logits(self, h_BLD: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h_BLD.float(), cond_BD).float()).float()

    def check_labels(self, label_B: torch.Tensor, allow_null: bool) -> None:
        """Raise ValueError unless `label_B` is a 1-D integer tensor of valid class ids.

        The range check reads the values, a host sync on an accelerator; there it is left to
        the embedding's own bounds check so that a training step does not wait for it.
        """
        hi = self.num_classes + (1 if allow_null else 0)
        if label_B.dtype not in (torch.int64, torch.int32) or label_B.ndim != 1:
            raise ValueError(f"labels must be a 1-D integer tensor, got {label_B.dtype} "
                             f"{tuple(label_B.shape)}.")
        if label_B.device.type != "cpu" or not label_B.numel():
            return
        low, high = label_B.aminmax()
        if int(low) < 0 or int(high) >= hi:
            raise ValueError(
                f"labels must be in 0..{self.num_classes - 1} (this model has {self.num_classes} "
                f"classes), got min {int(low)}, max {int(high)}."
            )

    def _layer_work(self, plan: DepthPlan, device) -> list[_LayerWork | None]:
        """Per layer: None when it runs every token, else the tokens and mask it processes."""
        work: list[_LayerWork | None] = []
        for layer in range(self.depth):
            scales = plan.scales_of_layer(layer)
            if len(scales) == self.num_scales:
                work.append(None)
                continue
            if not scales:
                work.append(_LayerWork(0, 0, None, self.attn_bias_for_masking[:, :, :0, :0]))
                continue
            ranges = [self.begin_ends[k] for k in scales]
            contiguous = all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            if contiguous:
                start, stop = ranges[0][0], ranges[-1][1]
                bias = self.attn_bias_for_masking[:, :, start:stop, start:stop]
                work.append(_LayerWork(start, stop, None, bias))
            else:
                index = torch.cat([torch.arange(a, b, device=device) for a, b in ranges])
                bias = self.attn_bias_for_masking[:, :, index][:, :, :, index]
                work.append(_LayerWork(0, 0, index, bias))
        return work

    # ------------------------------------------------------------------ teacher forcing
    def embed_inputs(self, label_B: torch.Tensor, x_BLCv_wo_first_l: torch.Tensor):
        """Token sequence (B, L, D) and condition (B, D); class dropout only in train mode."""
        B = x_BLCv_wo_first_l.shape[0]
        if self.training and self.config.cond_drop_rate > 0:
            drop = torch.rand(B, device=label_B.device) < self.config.cond_drop_rate
            label_B = torch.where(drop, self.num_classes, label_B)
        sos = cond_BD = self.condition(label_B)
        sos = sos.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, -1, -1)
        x_BLD = torch.cat((sos, self.word_embed(x_BLCv_wo_first_l.float())), dim=1)
        x_BLD += self.lvl_embed(self.lvl_1L.expand(B, -1)) + self.pos_1LC
        return x_BLD, cond_BD

    def forward(self, label_B: torch.Tensor, x_BLCv_wo_first_l: torch.Tensor,
                plan: DepthPlan | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) under `plan` (None: the full network)."""
        plan = self.resolve_plan(plan)
        B = x_BLCv_wo_first_l.shape[0]
        if x_BLCv_wo_first_l.shape[1:] != (self.L - self.first_l, self.Cvae):
            raise ValueError(
                f"x_BLCv_wo_first_l must be (B, {self.L - self.first_l}, {self.Cvae}) for "
                f"patch_nums {self.patch_nums}, got {tuple(x_BLCv_wo_first_l.shape)}; build it "
                "with vae.idxBl_to_var_input(vae.img_to_idxBl(img))."
            )
        if label_B.shape != (B,):
            raise ValueError(f"label_B must have shape ({B},), got {tuple(label_B.shape)}.")
        self.check_labels(label_B, allow_null=True)
        x_BLD, cond_BD = self.embed_inputs(label_B, x_BLCv_wo_first_l)
        cond = self.shared_ada_lin(cond_BD)
        for block, work in zip(self.blocks, self._layer_work(plan, x_BLD.device)):
            if work is None:
                x_BLD = block(x_BLD, cond, attn_bias=self.attn_bias_for_masking)
            elif work.index is not None:
                part = block(x_BLD.index_select(1, work.index), cond, attn_bias=work.attn_bias)
                x_BLD = x_BLD.index_copy(1, work.index, part)
            elif work.stop > work.start:
                part = block(x_BLD[:, work.start:work.stop], cond, attn_bias=work.attn_bias)
                x_BLD = torch.cat((x_BLD[:, :work.start], part, x_BLD[:, work.stop:]), dim=1)
        return self.get_logits(x_BLD.float(), cond_BD)

    # ------------------------------------------------------------------ per-scale steps
    # The `ScaleModel` protocol (sampling/protocol.py): the sampler drives these, scale by scale.
    def start(self, label_R: torch.Tensor) -> tuple[torch.Tensor, ScaleContext]:
        """Scale 0's input (R, 1, D): the class embedding as start token, and the context."""
        R = label_R.shape[0]
        sos = cond_RD = self.condition(label_R)
        lvl_pos = self.lvl_embed(self.lvl_1L) + self.pos_1LC
        x_RlD = (sos.unsqueeze(1).expand(R, self.first_l, -1)
                 + self.pos_start.expand(R, self.first_l, -1) + lvl_pos[:, :self.first_l])
        return x_RlD, ScaleContext(cond_RD, self.shared_ada_lin(cond_RD), lvl_pos)

    def run_layers(self, scale_index: int, x_RlD: torch.Tensor, ctx: ScaleContext,
                   layers: Sequence[int], cache: KVCache) -> torch.Tensor:
        for layer in layers:
            x_RlD = self.blocks[layer](x_RlD, ctx.block_cond, kv=cache.callback(layer, scale_index))
        return x_RlD

    def logits(self, h_RlD: torch.Tensor, ctx: ScaleContext) -> torch.Tensor:
        return self.get_logits(h_RlD, ctx.cond_RD)

    def embed_tokens(self, idx_Bl: torch.Tensor) -> torch.Tensor:
        return self._tokenizer().quantize.embedding(idx_Bl)

    def embed_probs(self, probs_BlV: torch.Tensor) -> torch.Tensor:
        return probs_BlV @ self._tokenizer().quantize.embedding.weight

    def new_latent(self, B: int) -> torch.Tensor:
        self._tokenizer()  # sampling needs the tokenizer: fail before any work
        side = self.patch_nums[-1]
        return torch.zeros(B, self.Cvae, side, side, device=self.device)

    def advance(self, scale_index: int, f_hat: torch.Tensor, h_BlC: torch.Tensor):
        B, pn = h_BlC.shape[0], self.patch_nums[scale_index]
        h_BChw = h_BlC.transpose(1, 2).reshape(B, self.Cvae, pn, pn)
        f_hat, next_BChw = self._tokenizer().quantize.get_next_autoregressive_input(
            scale_index, self.num_scales, f_hat, h_BChw)
        if scale_index == self.num_scales - 1:
            return f_hat, None
        return f_hat, next_BChw.view(B, self.Cvae, -1).transpose(1, 2)

    def scale_input(self, scale_index: int, x_BlC: torch.Tensor,
                    ctx: ScaleContext) -> torch.Tensor:
        begin, end = self.begin_ends[scale_index]
        return self.word_embed(x_BlC) + ctx.lvl_pos_1LD[:, begin:end]

    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        # channels_last lets oneDNN pick faster convolution kernels on CPU (same values to ~1e-5)
        f_hat = f_hat.contiguous(memory_format=torch.channels_last)
        return self._tokenizer().fhat_to_img(f_hat).float().contiguous().add_(1).mul_(0.5)

    def _tokenizer(self):
        if self.vae is None:
            raise ValueError("this VAR has no tokenizer attached; build it with "
                             "variant.build_var(vae, ...) or call var.attach_vae(vae).")
        return self.vae

    # ------------------------------------------------------------------ sampling
    def generate(self, B: int, label_B=None, *, cfg: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 plan: DepthPlan | str | None = None, more_smooth: bool | None = None,
                 dtype: str | torch.dtype | None = None, settings: SamplingConfig | None = None,
                 progress: bool = False, **levers) -> GenerationResult:
        """Sample B images (see `variant.sampling.sampler.generate`; this is a thin delegate).

        The keyword settings override `settings` (default: the official `SamplingConfig()`);
        a None keyword keeps the setting's value. `levers`: any declared inference lever by
        name (sampling/levers.py), as `SamplingConfig` takes them.
        """
        given = {"cfg": cfg, "top_k": top_k, "top_p": top_p, "seed": seed,
                 "more_smooth": more_smooth, "dtype": dtype, **levers}
        settings = (settings or SamplingConfig()).replace(
            **{k: v for k, v in given.items() if v is not None})
        return generate(self, B, label_B, configuration=Configuration.of(self, plan, settings),
                        progress=progress)

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def init_weights(self, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5,
                     init_head: float = 0.02, init_std: float = -1.0) -> VAR:
        """The official from-scratch initialisation (truncated normal, scaled residual outputs)."""
        std = math.sqrt(1 / self.C / 3) if init_std < 0 else init_std
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        self.head.weight.mul_(init_head)
        self.head.bias.zero_()
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        self.head_nm.ada_lin[-1].bias.zero_()
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * self.depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * self.depth))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(init_adaln)
                block.ada_gss[:, :, :2].mul_(init_adaln_gamma)
            else:
                lin = block.ada_lin[-1]
                lin.weight[2 * self.C:].mul_(init_adaln)
                lin.weight[:2 * self.C].mul_(init_adaln_gamma)
                lin.bias.zero_()
        return self

    def extra_repr(self) -> str:
        c = self.config
        return f"depth={c.depth}, width={c.width}, heads={c.heads}, patch_nums={c.patch_nums}"


def build_var(vae=None, depth: int = 16, num_classes: int = 1000, patch_nums=None,
              shared_aln: bool = False, attn_l2_norm: bool = True, *, embed_dim: int = 0,
              num_heads: int = 0, mlp_ratio: float = 4.0, drop_path_rate: float = -1.0,
              cond_drop_rate: float = 0.1, norm_eps: float = 1e-6, attn_backend: str = "sdpa",
              init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5, init_head: float = 0.02,
              init_std: float = -1.0, flash_if_available: bool = True,
              fused_if_available: bool = True) -> VAR:
    """Build a VAR with the official builder's names and defaults (width 64*depth, heads=depth).

    `vae` supplies V, Cvae and (by default) patch_nums. `flash_if_available` and
    `fused_if_available` are accepted for signature compatibility; the attention backend is
    named explicitly by `attn_backend` instead of being picked by what happens to be installed.
    """
    del flash_if_available, fused_if_available
    if vae is not None:
        qcfg = vae.config
        V, Cvae = qcfg.V, qcfg.Cvae
        patch_nums = qcfg.patch_nums if patch_nums is None else patch_nums
    else:
        V, Cvae = 4096, 32
    if patch_nums is None:
        patch_nums = PATCH_NUMS_256
    config = VARConfig(depth=depth, embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                       num_classes=num_classes, V=V, Cvae=Cvae, patch_nums=tuple(patch_nums),
                       shared_aln=shared_aln, attn_l2_norm=attn_l2_norm,
                       cond_drop_rate=cond_drop_rate, drop_path_rate=drop_path_rate,
                       norm_eps=norm_eps, attn_backend=attn_backend)
    var = VAR(config, vae)
    return var.init_weights(init_adaln, init_adaln_gamma, init_head, init_std)
