"""The supernet training loop.

One optimizer step: draw the step's plan (full or a subnet, a pure function of (seed, step)),
run `accum` micro-batches under that plan with the official loss, sum metrics over ranks in one
all-reduce, clip, step AdamW, log. Everything the next step depends on (weights, optimizer,
schedules, data position, dropout RNG) is either checkpointed or recomputed from the step, so a
resumed run is bitwise equal to an uninterrupted one on CPU fp32.

Order (torchtitan): build the models, parallelize, restore a checkpoint, train.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ..atomic import write_text_atomic
from ..compiling import (
    blocks_compiled,
    compile_blocks,
    compile_errors,
    recompile_room,
    say_eager,
    uncompile_blocks,
)
from ..models.var import VAR
from ..pretrained import save_pretrained
from .build import build_models
from .checkpoint import (
    CheckpointManager,
    collect_model_state,
    collect_state,
    load_config_json,
    load_state,
    restore_state,
)
from .config import TrainConfig, resume_conflicts
from .data import MicroBatchSampler, TeacherForcing, build_dataset, build_loader, sample_format
from .loss import scale_sums, token_cross_entropy, var_loss
from .metrics import MetricsLogger, StepRecord, rank_zero_logging
from .optim import (
    autocast_dtype,
    build_optimizer,
    grad_scaler,
    set_lr_and_weight_decay,
    update_scaler,
)
from .parallel import (
    DistEnv,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    grad_norm_and_clip,
    gradient_sync,
    parallelize,
    pick_device,
)
from .schedule import LRSchedule, PlanSchedule, total_steps
from .signals import StopRequest

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf; the weights of that step were not updated."""


@dataclass(frozen=True)
class TrainResult:
    step: int  # optimizer steps completed
    total_steps: int
    stopped_by: str | None  # 'SIGTERM' / 'SIGINT', 'max_steps', or None when complete
    checkpoint: Path | None
    final_model: Path | None


def micro_batch_seed(seed: int, step: int, slot: int) -> int:
    """Seed of the dropout RNG for one micro-batch slot of one step (rank- and resume-proof)."""
    return ((seed * 1_000_003 + step) * 65_537 + slot) % (2**63)


class Trainer:
    def __init__(self, config: TrainConfig, *, env: DistEnv | None = None,
                 models: tuple[VAR, object] | None = None, dataset=None, resume: str = "auto"):
        self.config = config
        self.env = env or DistEnv(device=pick_device(config.device))
        device = self.env.device
        var, vae = models if models is not None else build_models(config)
        self.var, self.vae = var.to(device).train(), vae.to(device)
        if config.compile:
            compile_blocks(self.var)
        self.var.attach_vae(self.vae)
        self.dataset = dataset if dataset is not None else build_dataset(
            config, vae, var.num_classes)
        self._build_data()
        self.total_steps = total_steps(config, self.steps_per_epoch)
        self.stop_at = min(self.total_steps, config.max_steps or self.total_steps)
        self.plans = PlanSchedule(config, var.depth, var.num_scales, self.steps_per_epoch)
        self.lr_schedule = LRSchedule.from_config(config, self.steps_per_epoch)
        unused = self.plans.unused_layers()
        if unused:
            log.info("plans %s leave layers unused, so DDP looks for unused parameters on every "
                     "step (find_unused_parameters=True)", unused)
        self.model = parallelize(self.var, self.env, config.parallel, bool(unused))
        self.optimizer = build_optimizer(self.var, config, device)
        self.amp_dtype = autocast_dtype(config.precision, device)
        if self.amp_dtype is torch.float16 and config.parallel == "fsdp" and self.env.distributed:
            raise ValueError("--precision fp16 with --parallel fsdp is not supported (the loss "
                             "scaler would see only its gradient shard); use bf16.")
        self.scaler = grad_scaler(self.amp_dtype)
        self.checkpoints = CheckpointManager(config.out_dir, config.keep_last)
        self.step = self._restore(resume)

    # ------------------------------------------------------------------ set-up
    def _build_data(self) -> None:
        cfg, env = self.config, self.env
        micro = cfg.micro_batch or cfg.global_batch // env.world_size
        if micro < 1 or cfg.global_batch % (micro * env.world_size):
            raise ValueError(
                f"global batch {cfg.global_batch} is not a multiple of micro batch {micro} x "
                f"{env.world_size} ranks; pick --global-batch / --micro-batch so that it is.")
        self.micro_batch, self.accum = micro, cfg.global_batch // (micro * env.world_size)
        self.sampler = MicroBatchSampler(len(self.dataset), micro_batch=micro, accum=self.accum,
                                         seed=cfg.seed, rank=env.rank, world_size=env.world_size)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.loader = build_loader(self.dataset, self.sampler, cfg.num_workers, cfg.seed)
        self.teacher = TeacherForcing(self.vae, self.var.patch_nums, sample_format(self.dataset),
                                      self.env.device)

    def _restore(self, resume: str) -> int:
        """Start step: 0, or the step of the checkpoint named by `resume` ('auto': the latest)."""
        if resume == "auto":
            if self.env.is_main:
                self.checkpoints.remove_stale_temporaries()
            path = self.checkpoints.latest()
            if path is None:
                return 0
        else:
            path = Path(resume)
            if (path / "checkpoints").is_dir():  # a run directory: its latest checkpoint
                path = CheckpointManager(path).latest() or path
        saved = TrainConfig.from_dict(load_config_json(path))
        conflicts = resume_conflicts(saved, self.config)
        if conflicts:
            raise ValueError(
                f"cannot resume {path}: its run used different {conflicts} ("
                + ", ".join(f"{k}={getattr(saved, k)!r}" for k in conflicts)
                + "); run with the same settings, or choose a new --out-dir.")
        step = restore_state(self.model, self.optimizer, load_state(path), scaler=self.scaler,
                             env=self.env)
        log.info("resumed from %s at step %d/%d", path, step, self.total_steps)
        return step

    # ------------------------------------------------------------------ the loop
    def fit(self, on_step: Callable[[Trainer, StepRecord], None] | None = None) -> TrainResult:
        """Train to the end (or `max_steps`, or a SIGTERM/SIGINT); returns where it stopped."""
        cfg = self.config
        with rank_zero_logging(self.env), StopRequest() as stop, _redirect(cfg.progress):
            self._announce()
            metrics = MetricsLogger(cfg.out_dir, self.env, start_step=self.step,
                                    total_steps=self.total_steps, log_every=cfg.log_every,
                                    progress=cfg.progress, tensorboard=cfg.tensorboard)
            try:
                stopped_by = self._run(stop, metrics, on_step)
            finally:
                metrics.close()
            return self._finish(stopped_by)

    def _run(self, stop: StopRequest, metrics: MetricsLogger, on_step) -> str | None:
        spe = self.steps_per_epoch
        while self.step < self.stop_at:
            epoch, in_epoch = divmod(self.step, spe)
            self.sampler.set_epoch(epoch, in_epoch)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            batches = iter(self.loader)
            for _ in range(in_epoch, spe):
                micro = [next(batches) for _ in range(self.accum)]
                record = self.step_or_eager(micro)
                self.step += 1
                metrics.log_step(record)
                if on_step is not None:
                    on_step(self, record)
                stop_now = self._stop_agreed(stop)
                if stop_now or self._checkpoint_due():
                    self.save_checkpoint()
                if self.step >= self.stop_at:
                    break
                if stop_now:
                    return stop.signal_name or "signal"
        return None if self.step >= self.total_steps else "max_steps"

    def step_or_eager(self, micro_batches: list) -> StepRecord:
        """`train_step` at `self.step`; compiled blocks that fail to compile are dropped with one
        log line and the step reruns eagerly (nothing was applied: the failure comes before
        the optimizer step, and the dropout seeds are set per micro-batch)."""
        if not blocks_compiled(self.var):
            return self.train_step(self.step, micro_batches)
        try:
            with recompile_room():
                return self.train_step(self.step, micro_batches)
        except compile_errors() as error:
            say_eager("the training blocks", error)
            uncompile_blocks(self.var)
            self.optimizer.zero_grad(set_to_none=True)
            return self.train_step(self.step, micro_batches)

    def train_step(self, step: int, micro_batches: list) -> StepRecord:
        """One optimizer step on this rank's `accum` micro-batches."""
        started = time.perf_counter()
        name, plan = self.plans.plan(step)
        lr, wd = self.lr_schedule.lr(step), self.lr_schedule.weight_decay(step)
        set_lr_and_weight_decay(self.optimizer, lr, wd)
        smoothing = self.config.label_smoothing
        sums_3K = torch.zeros(3, self.var.num_scales, dtype=torch.float64, device=self.env.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.env.device)
        for a, batch in enumerate(micro_batches):
            label_B, gt_BL, x_BLCv = self.teacher(batch)
            torch.manual_seed(micro_batch_seed(self.config.seed, step,
                                               self.env.rank * self.accum + a))
            with gradient_sync(self.model, a == self.accum - 1):
                with self._autocast():
                    logits_BLV = self.model(label_B, x_BLCv, plan=plan)
                    ce_BL = token_cross_entropy(logits_BLV, gt_BL, smoothing)
                    loss = var_loss(ce_BL)
                scaled = loss / self.accum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            sums_3K += scale_sums(logits_BLV, gt_BL, None if smoothing else ce_BL,
                                  self.var.begin_ends)
            loss_sum += loss.detach().double()
        shared = all_reduce_sum(torch.cat([
            torch.stack([loss_sum, (~loss_sum.isfinite()).double()]), sums_3K.flatten()]),
            self.env)
        grad_norm = self._clip_and_step(step, name, shared[:2].tolist())
        elapsed = time.perf_counter() - started
        return StepRecord(step, (step + 1) / self.steps_per_epoch, name, self.plans.p(step),
                          lr, wd, grad_norm, self.config.global_batch * self.var.L / elapsed,
                          shared[2:].view(3, -1).cpu())

    def _stop_agreed(self, stop: StopRequest) -> bool:
        """Whether any rank was signalled; every rank gets the same answer at the same step."""
        if not self.env.distributed:
            return bool(stop)
        flag = torch.tensor([float(bool(stop))], device=self.env.device)
        return bool(all_reduce_max(flag, self.env).item() > 0)

    def _clip_and_step(self, step: int, plan_name: str, loss_and_flag: list[float]) -> float:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = float(grad_norm_and_clip(list(self.var.parameters()), self.config.grad_clip))
        bad_grad = self.scaler is None and not torch.isfinite(torch.tensor(grad_norm))
        if loss_and_flag[1] > 0 or bad_grad:
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(self._non_finite_message(step, plan_name, grad_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            update_scaler(self.scaler)
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _non_finite_message(self, step: int, plan_name: str, grad_norm: float) -> str:
        last = self.checkpoints.latest()
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        return (f"non-finite loss or gradient at step {step} (plan {plan_name}, grad norm "
                f"{grad_norm}); training stopped before applying it and {where}. Lower --lr, "
                "use --precision fp32 or bf16, or check the data, then rerun to resume.")

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_due(self) -> bool:
        every = self.config.save_every or self.steps_per_epoch
        return self.step % every == 0 or self.step == self.stop_at

    def save_checkpoint(self) -> Path | None:
        """Write the training state at `self.step` (collective: every rank must call it)."""
        state = collect_state(self.model, self.optimizer, step=self.step, scaler=self.scaler,
                              env=self.env)
        path = None
        if self.env.is_main:
            path = self.checkpoints.save(self.step, state, self.config.to_json())
            log.info("saved checkpoint %s", path)
        barrier(self.env)
        return path

    def _finish(self, stopped_by: str | None) -> TrainResult:
        final = None
        if stopped_by in (None, "max_steps"):
            final = self.export(Path(self.config.out_dir) / "final")
        elif self.env.is_main:
            log.info("stopped by %s at step %d; checkpoint saved, rerun the same command to "
                     "resume", stopped_by, self.step)
        return TrainResult(self.step, self.total_steps, stopped_by, self.checkpoints.latest(),
                           final)

    def export(self, directory: Path) -> Path | None:
        """Write a model directory for `variant sample` (collective; rank 0 writes)."""
        full = collect_model_state(self.model)
        if self.env.is_main:
            var = VAR(self.var.config, self.vae)
            var.load_state_dict(full, strict=True)
            meta = {"trained_steps": self.step, "subnet_depths": list(self.plans.depths),
                    "bridge": self.plans.bridge, "training": self.config.to_dict()}
            save_pretrained(directory, var, self.vae, meta)
            log.info("wrote model directory %s", directory)
        barrier(self.env)
        return directory if self.env.is_main else None

    def _announce(self) -> None:
        if not self.env.is_main:
            return
        write_text_atomic(Path(self.config.out_dir) / "config.json", self.config.to_json(),
                          fsync=True)
        log.info("resolved training config:\n%s", self.config.to_json())
        log.info("%d process(es) on %s, micro batch %d x %d accumulation -> global batch %d; "
                 "%d steps/epoch, %d steps total (%s), starting at step %d; bridge %d of %d "
                 "scales, subnets %s", self.env.world_size, self.env.device, self.micro_batch,
                 self.accum, self.config.global_batch, self.steps_per_epoch, self.total_steps,
                 "precision " + str(self.amp_dtype or torch.float32), self.step,
                 self.plans.bridge, self.var.num_scales, list(self.plans.plans)[1:])


def _redirect(progress: bool):
    return logging_redirect_tqdm() if progress else contextlib.nullcontext()
