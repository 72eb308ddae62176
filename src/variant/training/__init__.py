"""Supernet training: config and presets, schedules, loss, loop, checkpoints, parallel wrapping."""

from .config import TRAIN_PRESETS, TrainConfig, train_preset
from .schedule import LRSchedule, PlanSchedule, RatioSchedule, draw_subnet_depth
from .trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "TRAIN_PRESETS",
    "TrainConfig",
    "train_preset",
    "LRSchedule",
    "PlanSchedule",
    "RatioSchedule",
    "draw_subnet_depth",
    "NonFiniteLossError",
    "Trainer",
    "TrainResult",
]
