"""`TrainConfig`: one frozen dataclass for supernet training, plus named presets.

Every field carries its help text (`metadata["help"]`), so the CLI builds one `--flag` per field
from this file and there is only one set of defaults. A run writes the resolved config as JSON
beside every checkpoint; resuming reads it back and refuses changes outside `RESUME_MUTABLE`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sampling.families import read_family

RATIO_KINDS = ("progressive", "full-only", "fixed:<p>")
LR_RULES = ("absolute", "per256")
LR_DECAYS = ("lin0", "cos", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PARALLELS = ("ddp", "fsdp")
DATASETS = ("procedural", "folder", "tokens")

# Fields a resumed run may change: they do not alter the trajectory of the weights.
RESUME_MUTABLE = frozenset({
    "out_dir", "max_steps", "log_every", "save_every", "keep_last", "progress", "tensorboard",
    "num_workers", "device", "parallel", "compile",
})


def _f(default: Any, help: str) -> Any:  # noqa: A002 - `help` mirrors argparse
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Fine-tune (or train) a VAR into an elastic-depth supernet; see docs/TRAINING.md."""

    # ---- model
    init: str = _f("scratch", "starting weights: 'scratch' (random, --model-preset), a model "
                   "directory, an official var_d*.pth, a Hub id, or 'builtin'")
    model_preset: str = _f("tiny", "model preset for --init scratch (e.g. tiny, var-d16)")
    vae: str = _f("", "tokenizer: official VQVAE .pth (default: next to an official --init); "
                  "for --init scratch a tokenizer/model directory or VQVAE state dict, empty "
                  "means a random tokenizer")
    drop_path_rate: float = _f(-1.0, "override the model's drop-path rate (< 0: keep it)")
    cond_drop_rate: float = _f(-1.0, "override the class-dropout rate (< 0: keep it)")
    # ---- supernet
    subnet_depths: tuple[int, ...] = _f((2,), "subnet depths d drawn uniformly on a subnet step")
    bridge: int = _f(-1, "scales in the bridge zone, run by the full network (< 0: "
                     "sampling.plan.default_bridge, the paper's 6 of 10 scaled to the scales)")
    plan_family: str = _f("paper", "plans a subnet step draws from: 'paper' (the paper's plan "
                          "of a depth in --subnet-depths after --bridge), 'zone:A-B' (a subnet "
                          "depth on scales A..B only, e.g. zone:1-2) or 'monotone' (one depth "
                          "per scale, non-increasing, full on the first scale); see "
                          "sampling/families.py")
    ratio: str = _f("progressive", "subnet-step probability p: 'progressive' (three phases), "
                    "'fixed:P' (e.g. fixed:0.1) or 'full-only'")
    phase_epochs: tuple[float, ...] = _f((5.0, 15.0, 10.0), "epochs of phase 1 (p = p_start), "
                                         "phase 2 (p rises linearly), phase 3 (p = p_end)")
    p_start: float = _f(0.2, "subnet probability in phase 1")
    p_end: float = _f(1.0, "subnet probability in phase 3")
    # ---- data
    dataset: str = _f("procedural", "procedural (built-in Shapes-10), folder (ImageFolder at "
                      "--data-path) or tokens (pre-tokenised at --data-path)")
    data_path: str = _f("", "root of the image folder or the pre-tokenised data")
    num_images: int = _f(2000, "images of the procedural dataset")
    num_workers: int = _f(0, "DataLoader worker processes per rank")
    hflip: bool = _f(False, "random horizontal flips, a pure function of (seed, epoch, index) "
                     "(official default: off)")
    # ---- optimisation (official VAR trainer, reference section 5)
    global_batch: int = _f(32, "samples per optimizer step, summed over ranks and accumulation")
    micro_batch: int = _f(0, "samples per forward pass per rank (0: global_batch / world size, "
                          "no accumulation)")
    lr: float = _f(1e-3, "learning rate; with --lr-rule per256 it is the official tblr")
    lr_rule: str = _f("absolute", "absolute: peak lr = lr; per256: peak lr = lr * global_batch "
                      "/ 256 (official)")
    warmup_epochs: float = _f(-1.0, "linear warm-up length (< 0: total epochs / 50, official)")
    warmup_start: float = _f(0.005, "lr factor at step 0 of the warm-up (official wp0)")
    lr_decay: str = _f("lin0", "after warm-up: lin0 (official: flat 5%%, then linear), cos, "
                       "constant")
    lr_end: float = _f(0.01, "final lr factor of the decay (official wpe)")
    weight_decay: float = _f(0.05, "AdamW weight decay at the start (official twd)")
    weight_decay_end: float = _f(-1.0, "weight decay at the end, cosine ramp (< 0: constant)")
    betas: tuple[float, ...] = _f((0.9, 0.95), "AdamW betas")
    grad_clip: float = _f(2.0, "clip the global gradient norm (<= 0: no clipping)")
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing")
    precision: str = _f("auto", "auto (bf16 on CUDA, fp32 on CPU), fp32, bf16 or fp16 (CUDA, "
                        "with a GradScaler)")
    # ---- run
    max_steps: int = _f(0, "stop after this many optimizer steps (0: all epochs); schedules "
                        "still span the configured epochs")
    seed: int = _f(0, "seed of the weights, data order, plan draws and dropout")
    device: str = _f("auto", "auto (cuda:LOCAL_RANK if available, else cpu), cpu or cuda")
    parallel: str = _f("ddp", "multi-process wrapping: ddp or fsdp (FSDP2, per block)")
    compile: bool = _f(False, "run each transformer block under torch.compile (eager, with one "
                       "log line, where compiling fails)")
    out_dir: str = _f("runs/train", "run directory: checkpoints, metrics, final model")
    save_every: int = _f(0, "checkpoint every N steps (0: at the end of every epoch)")
    keep_last: int = _f(3, "checkpoints to keep (older ones are deleted)")
    log_every: int = _f(10, "console summary every N steps")
    progress: bool = _f(True, "show a tqdm progress bar on rank 0")
    tensorboard: bool = _f(True, "write TensorBoard scalars (needs the 'train' extra)")

    def __post_init__(self) -> None:
        for name in ("subnet_depths", "phase_epochs", "betas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "subnet_depths", tuple(int(d) for d in self.subnet_depths))
        self._check_supernet()
        self._check_optimisation()
        self._check_run()

    def _check_supernet(self) -> None:
        if not self.subnet_depths or min(self.subnet_depths) < 1:
            raise ValueError(f"subnet_depths must be positive depths such as 2,4,8,16, got "
                             f"{self.subnet_depths}.")
        if len(set(self.subnet_depths)) != len(self.subnet_depths):
            raise ValueError(f"subnet_depths has duplicates: {self.subnet_depths}.")
        if len(self.phase_epochs) != 3 or min(self.phase_epochs) < 0 or self.total_epochs <= 0:
            raise ValueError("phase_epochs must be three non-negative epoch counts with a "
                             f"positive sum (phase 1, 2, 3), got {self.phase_epochs}.")
        if not (0 <= self.p_start <= 1 and 0 <= self.p_end <= 1):
            raise ValueError(f"p_start and p_end must be in [0, 1], got {self.p_start}, "
                             f"{self.p_end}.")
        self.fixed_ratio  # noqa: B018 - parses and validates `ratio`
        read_family(self.plan_family)
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}.")
        if self.dataset != "procedural" and not self.data_path:
            raise ValueError(f"--dataset {self.dataset} needs --data-path (the data root).")

    def _check_optimisation(self) -> None:
        if self.global_batch < 1 or self.micro_batch < 0:
            raise ValueError(f"global_batch must be >= 1 and micro_batch >= 0, got "
                             f"{self.global_batch}, {self.micro_batch}.")
        if self.micro_batch and self.global_batch % self.micro_batch:
            raise ValueError(f"global_batch {self.global_batch} is not a multiple of micro_batch "
                             f"{self.micro_batch}; pick a micro batch that divides it.")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}.")
        for name, value, choices in (("lr_rule", self.lr_rule, LR_RULES),
                                     ("lr_decay", self.lr_decay, LR_DECAYS),
                                     ("precision", self.precision, PRECISIONS),
                                     ("parallel", self.parallel, PARALLELS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if not (0 < self.warmup_start <= 1 and 0 <= self.lr_end <= 1):
            raise ValueError("warmup_start must be in (0, 1] and lr_end in [0, 1].")

    def _check_run(self) -> None:
        if self.max_steps < 0 or self.save_every < 0 or self.keep_last < 1 or self.log_every < 1:
            raise ValueError("max_steps and save_every must be >= 0, keep_last and log_every "
                             ">= 1.")
        if self.num_workers < 0 or self.num_images < 1:
            raise ValueError("num_workers must be >= 0 and num_images >= 1.")

    # ---- derived values
    @property
    def total_epochs(self) -> float:
        return float(sum(self.phase_epochs))

    @property
    def fixed_ratio(self) -> float | None:
        """p for 'fixed:P' and 'full-only' (0.0); None for the progressive schedule."""
        if self.ratio == "progressive":
            return None
        if self.ratio == "full-only":
            return 0.0
        if self.ratio.startswith("fixed:"):
            try:
                p = float(self.ratio.split(":", 1)[1])
            except ValueError:
                p = -1.0
            if 0.0 <= p <= 1.0:
                return p
        raise ValueError(f"ratio must be one of {RATIO_KINDS} with 0 <= P <= 1, got "
                         f"{self.ratio!r}.")

    @property
    def peak_lr(self) -> float:
        return self.lr * self.global_batch / 256 if self.lr_rule == "per256" else self.lr

    @property
    def final_weight_decay(self) -> float:
        return self.weight_decay if self.weight_decay_end < 0 else self.weight_decay_end

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(names)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def resume_conflicts(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Fields that differ between a run's saved config and a resumed one, beyond the mutable."""
    a, b = saved.to_dict(), new.to_dict()
    return [k for k in a if a[k] != b[k] and k not in RESUME_MUTABLE]


# --------------------------------------------------------------------------------------------
# Presets: named functions; the CLI applies overrides on top with `TrainConfig.replace`.

def paper_d30() -> TrainConfig:
    """The paper's supernet fine-tuning of VAR-d30 (ImageNet 256, 8 x H100)."""
    return TrainConfig(
        init="var_d30.pth", model_preset="var-d30", vae="",
        subnet_depths=(2, 4, 8, 16), bridge=6, ratio="progressive",
        phase_epochs=(5.0, 15.0, 10.0), p_start=0.2, p_end=1.0,
        dataset="folder", data_path="imagenet/train", num_workers=8,
        global_batch=1024, micro_batch=16, lr=1e-6, lr_rule="absolute",
        weight_decay=0.05, weight_decay_end=0.08, grad_clip=2.0,
        precision="bf16", parallel="fsdp", save_every=1000, log_every=50,
        out_dir="runs/paper-d30",
    )


def tiny() -> TrainConfig:
    """Test-sized supernet on the built-in Shapes-10 images: a minute or two on 2 CPU cores."""
    return TrainConfig(
        init="scratch", model_preset="tiny",
        subnet_depths=(2, 3), bridge=2, ratio="progressive",
        phase_epochs=(1.0, 2.0, 1.0), p_start=0.2, p_end=1.0,
        dataset="procedural", num_images=1024,
        global_batch=32, lr=2e-3, lr_rule="absolute", warmup_epochs=0.25,
        weight_decay=0.05, grad_clip=2.0, precision="auto", parallel="ddp",
        log_every=10, out_dir="runs/tiny",
    )


def builtin_base() -> TrainConfig:
    """The built-in model's base VAR: full network only, from scratch on Shapes-10 (CPU).

    Plays the role of the pretrained VAR that the paper starts from; needs --vae with the
    built-in tokenizer (`variant train-tokenizer --preset builtin`).
    """
    return TrainConfig(
        init="scratch", model_preset="builtin", ratio="full-only",
        subnet_depths=(2, 4), bridge=4, phase_epochs=(0.0, 0.0, 4.0),
        dataset="procedural", num_images=10_000, global_batch=32, lr=1e-3, lr_rule="absolute",
        warmup_epochs=0.25, lr_decay="cos", lr_end=0.05, weight_decay=0.05, grad_clip=2.0,
        precision="auto", save_every=500, log_every=50, out_dir="runs/builtin-base",
    )


def builtin_supernet() -> TrainConfig:
    """Supernet fine-tuning of the built-in base VAR: the paper's recipe in miniature.

    Subnets of 4 and 2 of 8 layers in the last 2 of 6 scales (bridge 4, the paper's 60%), the
    three-stage ratio with phases 0.5/1.5/1 epochs (the paper's 5/15/10 scaled down); needs
    --init with the base model directory.
    """
    return TrainConfig(
        init="runs/builtin-base/final", model_preset="builtin", ratio="progressive",
        subnet_depths=(2, 4), bridge=4, phase_epochs=(0.5, 1.5, 1.0), p_start=0.2, p_end=1.0,
        dataset="procedural", num_images=10_000, global_batch=32, lr=2e-4, lr_rule="absolute",
        warmup_epochs=0.1, lr_decay="constant", weight_decay=0.05, grad_clip=2.0,
        precision="auto", save_every=500, log_every=50, seed=1, out_dir="runs/builtin-supernet",
    )


TRAIN_PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "builtin-base": builtin_base,
    "builtin-supernet": builtin_supernet,
    "paper-d30": paper_d30,
    "tiny": tiny,
}


def train_preset(name: str) -> TrainConfig:
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of "
                         f"{sorted(TRAIN_PRESETS)}.")
    return TRAIN_PRESETS[name]()
