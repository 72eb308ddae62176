"""Tokenizer training: the multi-scale VQVAE's losses, discriminator, trainer and presets."""

from .evaluate import evaluate_tokenizer, format_report
from .presets import TOKENIZER_PRESETS, TokenizerTrainConfig, tokenizer_preset
from .trainer import TokenizerTrainer

__all__ = [
    "TOKENIZER_PRESETS",
    "TokenizerTrainConfig",
    "TokenizerTrainer",
    "evaluate_tokenizer",
    "format_report",
    "tokenizer_preset",
]
