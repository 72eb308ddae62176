"""Evaluation: class-balanced sample folders, ADM npz files, FID / IS / precision / recall
(Inception via torch-fidelity, or the built-in Shapes-10 metric network)."""

from .evaluate import evaluate_plans, format_table
from .fid_is import frechet_distance, inception_score, precision_recall
from .quality import QualityMetric, Reference, build_metric, evaluate_quality
from .sample_folder import SamplingSpec, sample_to_folder

__all__ = [
    "QualityMetric",
    "Reference",
    "SamplingSpec",
    "build_metric",
    "evaluate_plans",
    "evaluate_quality",
    "format_table",
    "frechet_distance",
    "inception_score",
    "precision_recall",
    "sample_to_folder",
]
