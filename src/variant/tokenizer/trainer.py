"""Tokenizer training: the multi-scale VQVAE from scratch or fine-tuned from a checkpoint.

Loss per step (weights from `TokenizerTrainConfig`):
    l1 * |x' - x| + l2 * (x' - x)^2 + perceptual * LPIPS(x', x) + vq * vq_loss
    + adv * lambda * (-D(x'))                       (from `adv_start_step`, if adv > 0)
vq_loss is the quantiser's commitment (beta) + codebook term; lambda is VQGAN's adaptive weight
(or 1). The PatchGAN discriminator D is trained with the hinge loss on the same steps.

Run directory OUT:
    OUT/checkpoints/step-*/   full training state (variant.training.checkpoint layout, atomic)
    OUT/tokenizer/            the latest tokenizer (config.json + tokenizer.safetensors)
    OUT/metrics.jsonl         one JSON record per log interval ("train") and epoch ("eval")

Data order, flips and the learning rate are functions of (seed, step), so a resumed run equals an
uninterrupted one (bitwise on CPU in fp32).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import config_to_dict
from ..data.folder import ImageFolder
from ..data.loader import build_loader, set_loader_epoch, steps_per_epoch
from ..data.procedural import ProceduralImages
from ..data.tokens import FlippedImages
from ..models.vqvae import VQVAE
from ..tokenizer_io import RUN_SUBDIR, load_tokenizer, save_tokenizer
from ..training.checkpoint import CheckpointManager, rng_state, set_rng_state
from .codebook import restart_dead_codes
from .discriminator import PatchDiscriminator
from .evaluate import evaluate_tokenizer, format_report
from .losses import (
    adaptive_adv_weight,
    generator_adv_loss,
    hinge_d_loss,
    load_lpips,
    reconstruction_loss,
)
from .presets import TokenizerTrainConfig

log = logging.getLogger(__name__)

STATE_FORMAT = "variant-tokenizer-train-state"
METRICS_FILE = "metrics.jsonl"
# Settings that may change between a run and its resumption (they do not alter the trajectory).
RESUMABLE_CHANGES = ("log_every", "checkpoint_every", "eval_images")


def lr_at(step: int, total_steps: int, cfg: TokenizerTrainConfig) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to `lr * min_lr_ratio`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(
        math.pi * progress)))


def build_datasets(cfg: TokenizerTrainConfig, data: str):
    """(training images, held-out evaluation images) for 'procedural' or an image folder."""
    size = cfg.image_size
    if data == "procedural":
        train = ProceduralImages(cfg.num_images, size, seed=cfg.data_seed)
        held_out = ProceduralImages(cfg.eval_images, size, seed=cfg.data_seed + 1)
    else:
        train = ImageFolder(data, size, train=True, seed=cfg.seed)
        full = ImageFolder(data, size, train=False)
        step = max(1, len(full) // cfg.eval_images)  # evenly spaced, fixed across epochs
        held_out = torch.utils.data.Subset(full, range(0, len(full), step)[: cfg.eval_images])
    return (FlippedImages(train, cfg.seed) if cfg.hflip else train), held_out


class TokenizerTrainer:
    """Owns the models, optimizers, data and run directory of one tokenizer training run."""

    def __init__(self, config: TokenizerTrainConfig, out: str | Path, *,
                 data: str = "procedural", init: str | Path | None = None,
                 perceptual_weights: list[str] | tuple[str, ...] = (),
                 device: str | torch.device = "cpu", num_workers: int = 0,
                 resume: bool = False, progress: bool = True) -> None:
        self.out, self.device = Path(out), torch.device(device)
        self.data, self.init, self.progress = data, None if init is None else str(init), progress
        self.checkpoints = CheckpointManager(self.out, keep_last=2)
        if self.checkpoints.latest() is not None and not resume:
            raise ValueError(f"{self.out} already holds a tokenizer training run; pass --resume "
                             "to continue it, or choose another --out.")
        torch.manual_seed(config.seed)
        self.vae = self._build_vae(config)
        self.config = config = dataclasses.replace(config, vae=self.vae.config)
        self.disc = None
        if config.adv_weight > 0:
            self.disc = PatchDiscriminator(channels=config.disc_channels,
                                           num_layers=config.disc_layers).to(self.device)
        self.lpips = None
        if config.perceptual_weight > 0:
            self.lpips = load_lpips(perceptual_weights).to(self.device)
        self.opt = torch.optim.AdamW(self.vae.parameters(), lr=config.lr, betas=config.betas,
                                     weight_decay=config.weight_decay)
        self.disc_opt = None if self.disc is None else torch.optim.AdamW(
            self.disc.parameters(), lr=config.disc_lr, betas=config.betas, weight_decay=0.0)
        self.train_set, self.eval_set = build_datasets(config, data)
        self.num_workers = num_workers
        self.step = 0
        if resume:
            self._restore()
        self.loader = build_loader(self.train_set, config.batch_size, seed=config.seed,
                                   num_workers=num_workers, start_step=self.step)
        self.steps_per_epoch = steps_per_epoch(self.loader.sampler, config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch

    # -----------------------------------------------------------------------------------------
    # setup

    def _build_vae(self, cfg: TokenizerTrainConfig) -> VQVAE:
        if self.init is None:
            return VQVAE(cfg.vae).to(self.device).train()
        vae = load_tokenizer(self.init, patch_nums=cfg.vae.patch_nums, device=self.device,
                             frozen=False)
        if vae.config != cfg.vae:
            log.info("fine-tuning %s: its configuration replaces the preset's VQVAE", self.init)
        return vae

    def _autocast(self):
        cfg = self.config
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and
                                               self.device.type == "cuda")
        if not use_bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # -----------------------------------------------------------------------------------------
    # one step

    def train_step(self, img_B3HW: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step of the VQVAE (and of the discriminator once it is active)."""
        cfg = self.config
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.total_steps, cfg)
        adv_on = self.disc is not None and self.step >= cfg.adv_start_step
        with self._autocast():
            rec_B3HW, usages_K, vq_loss = self.vae(img_B3HW)
            terms = {"rec": reconstruction_loss(rec_B3HW, img_B3HW, l1_weight=cfg.l1_weight,
                                                l2_weight=cfg.l2_weight), "vq": vq_loss}
            nll = terms["rec"]
            if self.lpips is not None:
                terms["perceptual"] = self.lpips(rec_B3HW.float(), img_B3HW).mean()
                nll = nll + cfg.perceptual_weight * terms["perceptual"]
            loss = nll + cfg.vq_weight * vq_loss
            if adv_on:
                self.disc.requires_grad_(False)
                terms["g_adv"] = generator_adv_loss(self.disc(rec_B3HW))
                weight = torch.ones(())
                if cfg.adaptive_adv_weight:
                    weight = adaptive_adv_weight(nll, terms["g_adv"],
                                                 self.vae.decoder.conv_out.weight)
                terms["adv_lambda"] = weight
                loss = loss + cfg.adv_weight * weight * terms["g_adv"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        terms["grad_norm"] = _clip(self.vae.parameters(), cfg.grad_clip)
        self.opt.step()
        every = cfg.restart_dead_codes_every
        if every and (self.step + 1) % every == 0:
            terms["restarted_codes"] = self._restart_codes(img_B3HW)
        if adv_on:
            terms["d_loss"] = self._disc_step(img_B3HW, rec_B3HW.detach())
        terms["loss"] = loss.detach()
        terms["usage"] = usages_K
        self.step += 1
        return {k: v.detach().float() for k, v in terms.items()}

    @torch.no_grad()
    def _restart_codes(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        with self._autocast():
            f_BChw = self.vae.img_to_f(img_B3HW)
        count = restart_dead_codes(self.vae.quantize, f_BChw,
                                   threshold=self.config.dead_code_threshold, generator=generator)
        return torch.tensor(float(count))

    def _disc_step(self, real_B3HW: torch.Tensor, fake_B3HW: torch.Tensor) -> torch.Tensor:
        self.disc.requires_grad_(True)
        for group in self.disc_opt.param_groups:
            group["lr"] = self.config.disc_lr
        with self._autocast():
            d_loss = hinge_d_loss(self.disc(real_B3HW), self.disc(fake_B3HW))
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        _clip(self.disc.parameters(), self.config.grad_clip)
        self.disc_opt.step()
        return d_loss

    # -----------------------------------------------------------------------------------------
    # loop

    def train(self, max_steps: int | None = None) -> dict | None:
        """Train to the end (or to global step `max_steps`); returns the last evaluation."""
        cfg = self.config
        stop_at = self.total_steps if max_steps is None else min(max_steps, self.total_steps)
        log.info("training tokenizer: %d steps (%d epochs x %d), batch %d, %s, device %s",
                 self.total_steps, cfg.epochs, self.steps_per_epoch, cfg.batch_size,
                 _loss_summary(cfg), self.device)
        report = None
        window: list[dict[str, torch.Tensor]] = []
        tick = time.perf_counter()
        while self.step < stop_at:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            set_loader_epoch(self.loader, epoch, in_epoch * cfg.batch_size)
            bar = self._bar(epoch, in_epoch)
            for img_B3HW, _ in self.loader:
                window.append(self.train_step(img_B3HW.to(self.device, non_blocking=True)))
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == stop_at:
                    self._log_train(window, time.perf_counter() - tick, bar)
                    window, tick = [], time.perf_counter()
                if self.step % cfg.checkpoint_every == 0 and self.step % self.steps_per_epoch:
                    self.save_checkpoint()
                if self.step >= stop_at:
                    break
            if bar is not None:
                bar.close()
            if self.step % self.steps_per_epoch == 0:
                report = self.end_of_epoch(self.step // self.steps_per_epoch)
            elif self.step >= stop_at:
                self.save_checkpoint()
        return report

    def end_of_epoch(self, epochs_done: int) -> dict:
        """Evaluate on the held-out images, log the per-scale table, save tokenizer + state."""
        report = self.evaluate()
        log.info("epoch %d/%d, step %d:\n%s", epochs_done, self.config.epochs, self.step,
                 format_report(report, self.vae.config.patch_nums))
        self._append({"kind": "eval", "step": self.step, "epoch": epochs_done, **report})
        save_tokenizer(self.out / RUN_SUBDIR, self.vae, meta={
            "trained_steps": self.step, "epochs": epochs_done, "data": self.data,
            "init": self.init, "eval": report,
            "train_config": _jsonable(dataclasses.asdict(self.config))})
        self.save_checkpoint()
        return report

    def evaluate(self) -> dict:
        loader = torch.utils.data.DataLoader(self.eval_set, batch_size=self.config.batch_size,
                                             num_workers=self.num_workers)
        return evaluate_tokenizer(self.vae, loader, self.device)

    def _bar(self, epoch: int, start: int):
        if not self.progress:
            return None
        return tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}",
                    unit="step", leave=False, dynamic_ncols=True)

    def _log_train(self, window: list[dict[str, torch.Tensor]], seconds: float, bar) -> None:
        keys = set().union(*window) - {"usage"}
        record = {k: float(torch.stack([w[k] for w in window if k in w]).mean()) for k in keys}
        if "restarted_codes" in record:  # a count over the interval, not a mean
            record["restarted_codes"] = sum(float(w.get("restarted_codes", 0)) for w in window)
        record.update(kind="train", step=self.step, epoch=self.step / self.steps_per_epoch,
                      lr=self.opt.param_groups[0]["lr"], usage=window[-1]["usage"].tolist(),
                      img_per_s=len(window) * self.config.batch_size / max(seconds, 1e-9))
        self._append(record)
        text = (f"step {self.step}/{self.total_steps} loss {record['loss']:.4f} rec "
                f"{record['rec']:.4f} vq {record['vq']:.4f} usage% "
                f"{[round(u) for u in record['usage']]} {record['img_per_s']:.1f} img/s")
        if bar is not None:
            bar.set_postfix_str(f"loss {record['loss']:.4f}")
        log.info(text)

    def _append(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    # -----------------------------------------------------------------------------------------
    # checkpoints

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT, "version": 1, "step": self.step,
            "config": _jsonable(dataclasses.asdict(self.config)),
            "vae_config": config_to_dict(self.vae.config),
            "run": {"data": self.data, "init": self.init},
            "vae": self.vae.state_dict(), "opt": self.opt.state_dict(),
            "num_usage_updates": self.vae.quantize.num_usage_updates,
            "disc": None if self.disc is None else self.disc.state_dict(),
            "disc_opt": None if self.disc_opt is None else self.disc_opt.state_dict(),
            "rng": rng_state(self.device),
        }

    def save_checkpoint(self) -> Path:
        path = self.checkpoints.save(self.step, self.state_dict(),
                                     json.dumps(_jsonable(dataclasses.asdict(self.config))))
        log.info("checkpoint %s", path)
        return path

    def _restore(self) -> None:
        latest = self.checkpoints.latest()
        if latest is None:
            raise ValueError(f"--resume: {self.out} holds no tokenizer checkpoint "
                             "(checkpoints/step-*); drop --resume to start a new run.")
        state = torch.load(latest / "state.pt", map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{latest} is not a tokenizer training checkpoint.")
        _check_same_run(state, self)
        self.vae.load_state_dict(state["vae"], strict=True)
        self.vae.quantize.num_usage_updates = int(state["num_usage_updates"])
        self.opt.load_state_dict(state["opt"])
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
            self.disc_opt.load_state_dict(state["disc_opt"])
        set_rng_state(state["rng"], self.device)
        self.step = int(state["step"])
        _truncate_metrics(self.out / METRICS_FILE, self.step)
        log.info("resumed from %s (step %d)", latest, self.step)


def _check_same_run(state: dict, trainer: TokenizerTrainer) -> None:
    saved = state["config"]
    now = _jsonable(dataclasses.asdict(trainer.config))
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    run_now = {"data": trainer.data, "init": trainer.init}
    diff += [k for k in run_now if state["run"].get(k) != run_now[k]]
    if diff:
        raise ValueError(f"--resume: the settings {diff} differ from the checkpointed run in "
                         f"{trainer.out}; resume with the same arguments or use a new --out.")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint (they will be logged again)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def _clip(params, max_norm: float) -> torch.Tensor:
    params = [p for p in params if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))


def _loss_summary(cfg: TokenizerTrainConfig) -> str:
    parts = [f"{name} {w:g}" for name, w in (("l1", cfg.l1_weight), ("l2", cfg.l2_weight),
             ("vq", cfg.vq_weight), ("lpips", cfg.perceptual_weight), ("adv", cfg.adv_weight))
             if w]
    return "loss " + " + ".join(parts)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
