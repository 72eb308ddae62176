"""Tokenizer training configuration: one frozen dataclass and named presets.

`builtin` is the tokenizer of the built-in model: Shapes-10 at 64 px, 8x downsampling to an 8x8
latent, patch_nums (1, 2, 3, 4, 6, 8) (L = 130 tokens), V = 512 codes of 16 channels, 1.1 M
parameters, sized to train in about five minutes on a 2-core CPU. `paper` is the official
`vae_ch160v4096z32` shape at 256 px (V = 4096, Cvae = 32, ch = 160, the official 10 scales), meant
for fine-tuning an official VQVAE on GPUs (`--init vae_ch160v4096z32.pth --data /imagenet/train`).
`tiny` is for tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..config import BUILTIN_VAE, VAEConfig

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True, kw_only=True)
class TokenizerTrainConfig:
    """Everything that decides a tokenizer training run, apart from file paths."""

    vae: VAEConfig
    # data: the procedural dataset's size and seed ('--data procedural'); a folder is used whole
    num_images: int = 10_000
    data_seed: int = 0
    eval_images: int = 256  # held-out images for the per-epoch report
    hflip: bool = True  # random horizontal flips, a function of (seed, epoch, index)
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio after the warm-up
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.5, 0.9)
    grad_clip: float = 1.0  # <= 0: no clipping
    # losses (reconstruction in [-1, 1] pixel space; vq = commitment (beta) + codebook terms)
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    vq_weight: float = 1.0
    perceptual_weight: float = 0.0  # LPIPS-VGG16; needs user-supplied weights
    adv_weight: float = 0.0  # PatchGAN hinge loss; 0 disables the discriminator
    adv_start_step: int = 0
    adaptive_adv_weight: bool = True  # VQGAN's gradient-norm balancing of the adversarial term
    disc_lr: float = 1e-4
    disc_channels: int = 64
    disc_layers: int = 3
    # codebook: every N steps re-seed codes used < threshold x a uniform share (0: never)
    restart_dead_codes_every: int = 0
    dead_code_threshold: float = 0.03
    # run
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    log_every: int = 25
    checkpoint_every: int = 500  # steps; a checkpoint is also written after every epoch

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        positive = ("num_images", "eval_images", "epochs", "batch_size", "log_every",
                    "checkpoint_every", "disc_channels", "disc_layers")
        bad = [f"{name}={getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        if bad:
            raise ValueError(f"these settings must be >= 1: {', '.join(bad)}.")
        weights = ("l1_weight", "l2_weight", "vq_weight", "perceptual_weight", "adv_weight")
        bad = [f"{name}={getattr(self, name)}" for name in weights if getattr(self, name) < 0]
        if bad:
            raise ValueError(f"loss weights must be >= 0: {', '.join(bad)}.")
        if self.l1_weight == 0 and self.l2_weight == 0 and self.perceptual_weight == 0:
            raise ValueError("no reconstruction loss: set --l1-weight or --l2-weight above 0.")
        if self.lr <= 0 or self.disc_lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need lr > 0, disc_lr > 0 and 0 <= min_lr_ratio <= 1, got "
                             f"{self.lr}, {self.disc_lr}, {self.min_lr_ratio}.")
        if min(self.warmup_steps, self.adv_start_step, self.restart_dead_codes_every) < 0:
            raise ValueError("warmup_steps, adv_start_step and restart_dead_codes_every must be "
                             ">= 0.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")

    @property
    def image_size(self) -> int:
        return self.vae.image_size


def _builtin() -> TokenizerTrainConfig:
    # 2 epochs x 6000 images = 750 steps of 16: about 5 CPU-minutes (1.1 M parameters). Tried at
    # 6400 images: ch_mult (1, 1, 2, 2) beat (1, 1, 2, 4) and (1, 2, 2, 4) (17.3 vs 16.4 dB, and
    # cheaper); batch 8 at lr 3e-3 matched batch 16 at 2e-3; betas (0.9, 0.99) were worse; dead-
    # code restarts raise usage from ~6 % to ~90 % of the codes.
    return TokenizerTrainConfig(vae=BUILTIN_VAE, num_images=6000, epochs=2, batch_size=16,
                                lr=2e-3, warmup_steps=20, l1_weight=1.0, l2_weight=1.0,
                                restart_dead_codes_every=20, eval_images=256, log_every=50)


def _paper() -> TokenizerTrainConfig:
    # Fine-tuning settings in the style of VQGAN / LlamaGen; add --perceptual-weight 1.0
    # --perceptual-weights ... and --adv-weight 0.5 --adv-start-step 20000 for the full recipe.
    return TokenizerTrainConfig(vae=VAEConfig(), epochs=2, batch_size=16, lr=1e-5,
                                warmup_steps=500, l1_weight=0.0, l2_weight=1.0, eval_images=100,
                                checkpoint_every=2000, log_every=50)


def _tiny() -> TokenizerTrainConfig:
    vae = VAEConfig(V=32, Cvae=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4))
    return TokenizerTrainConfig(vae=vae, num_images=32, eval_images=8, epochs=1, batch_size=8,
                                lr=2e-3, warmup_steps=0, disc_channels=32, disc_layers=1,
                                log_every=1)


TOKENIZER_PRESETS: dict[str, Callable[[], TokenizerTrainConfig]] = {
    "builtin": _builtin,
    "paper": _paper,
    "tiny": _tiny,
}


def tokenizer_preset(name: str, **overrides) -> TokenizerTrainConfig:
    """The named preset with some fields replaced (unknown fields raise ValueError)."""
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; choose one of "
                         f"{sorted(TOKENIZER_PRESETS)}.")
    known = {f.name for f in dataclasses.fields(TokenizerTrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown tokenizer training fields {unknown}; known: {sorted(known)}.")
    return dataclasses.replace(TOKENIZER_PRESETS[name](), **overrides)
