"""What a run reports: rank-0 logging, a JSONL metrics file, TensorBoard, a progress bar.

`OUT/metrics.jsonl` gets one line per optimizer step: the step (0-based schedule position), its
plan (`DepthPlan.name`: 'full', 'd<depth>'), p, lr, loss, grad norm, throughput and the per-scale
loss and accuracy of that step, summed over ranks. A resumed run first drops the lines of the
steps it is about to redo, so the file reads as if the run had never stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..sampling.plan import parse_spec
from .loss import summarize
from .parallel import DistEnv

log = logging.getLogger(__name__)


class RankZeroFilter(logging.Filter):
    """Pass every record on rank 0; only warnings and errors on the other ranks."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


@contextlib.contextmanager
def rank_zero_logging(env: DistEnv):
    """Install the filter on the root handlers for the duration of a run."""
    handlers = list(logging.getLogger().handlers)
    flt = RankZeroFilter(env.rank)
    for handler in handlers:
        handler.addFilter(flt)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(flt)


@dataclass
class StepRecord:
    step: int
    epoch: float
    plan: str
    p: float
    lr: float
    weight_decay: float
    grad_norm: float
    tokens_per_s: float
    sums_3K: torch.Tensor  # per-scale [ce sum, correct, tokens] over the step, all ranks

    def to_json(self) -> dict:
        stats = summarize(self.sums_3K)
        return {"step": self.step, "epoch": round(self.epoch, 6), "plan": self.plan,
                "p": self.p, "lr": self.lr, "weight_decay": self.weight_decay,
                "grad_norm": self.grad_norm, "tokens_per_s": round(self.tokens_per_s, 1),
                **stats}


class MetricsLogger:
    """Rank 0 writes; other ranks hold an inert instance (so call sites need no rank checks)."""

    def __init__(self, out_dir: str | Path, env: DistEnv, *, start_step: int, total_steps: int,
                 log_every: int, progress: bool, tensorboard: bool):
        self.active = env.is_main
        self.log_every, self.total_steps = log_every, total_steps
        self.interval: dict[str, list] = defaultdict(lambda: [None, 0])
        self.jsonl = self.tb = self.bar = None
        if not self.active:
            return
        path = Path(out_dir) / "metrics.jsonl"
        _drop_records_from(path, start_step)
        self.jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            self.tb = _tensorboard_writer(Path(out_dir) / "tensorboard")
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not progress,
                        dynamic_ncols=True, desc="train", unit="step")

    def log_step(self, rec: StepRecord) -> None:
        if not self.active:
            return
        data = rec.to_json()
        self.jsonl.write(json.dumps(data) + "\n")
        self.jsonl.flush()
        acc = self.interval[rec.plan]
        acc[0] = rec.sums_3K.clone() if acc[0] is None else acc[0] + rec.sums_3K
        acc[1] += 1
        if self.tb is not None:
            self._tensorboard(rec, data)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{data['loss']:.3f}", p=f"{rec.p:.2f}", plan=rec.plan,
                             tok_s=f"{rec.tokens_per_s:.0f}", refresh=False)
        done = rec.step + 1
        if done % self.log_every == 0 or done == self.total_steps:
            self._summary(rec)

    def _summary(self, rec: StepRecord) -> None:
        parts = []
        for plan in sorted(self.interval, key=lambda n: (n != "full", len(n), n)):
            sums, count = self.interval[plan]
            stats = summarize(sums)
            parts.append(f"{plan}: loss {stats['loss']:.4f} acc {100 * stats['acc']:.1f}% "
                         f"({count} steps)")
        self.interval.clear()
        log.info("step %d/%d epoch %.2f p %.3f lr %.3g | %s | %.0f tokens/s", rec.step + 1,
                 self.total_steps, rec.epoch, rec.p, rec.lr, " | ".join(parts), rec.tokens_per_s)

    def _tensorboard(self, rec: StepRecord, data: dict) -> None:
        step = rec.step
        for name in ("p", "lr", "weight_decay", "grad_norm", "tokens_per_s"):
            self.tb.add_scalar(f"train/{name}", data[name], step)
        depth = parse_spec(rec.plan).subnet_depth or 0  # 0: the full network
        self.tb.add_scalar("train/subnet_depth", depth, step)
        self.tb.add_scalar(f"{rec.plan}/loss", data["loss"], step)
        self.tb.add_scalar(f"{rec.plan}/acc", data["acc"], step)
        for k, (loss, acc) in enumerate(zip(data["scale_loss"], data["scale_acc"])):
            self.tb.add_scalar(f"{rec.plan}/loss_scale{k}", loss, step)
            self.tb.add_scalar(f"{rec.plan}/acc_scale{k}", acc, step)

    def close(self) -> None:
        for thing in (self.bar, self.tb, self.jsonl):
            if thing is not None:
                thing.close()
        self.jsonl = self.tb = self.bar = None


def _tensorboard_writer(log_dir: Path):
    if importlib.util.find_spec("tensorboard") is None:
        log.info("TensorBoard is not installed (pip install 'variant[train]'); writing "
                 "metrics.jsonl only")
        return None
    from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional extra

    return SummaryWriter(str(log_dir))


def _drop_records_from(path: Path, step: int) -> None:
    """Keep only the records of steps before `step` (atomically rewritten)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] < step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))
