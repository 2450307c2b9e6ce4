"""Evaluation of frozen features: kNN, linear probe, few-shot ridge, collapse diagnostics.

Every function here is pure: it takes [N, D] feature arrays (numpy or jax) and integer labels
and returns Python floats or dicts of them (JSON-serialisable). Producing the features from a
checkpoint is the caller's job (`Method.features`).
"""
from ssljax.evaluate.diagnostics import alignment, collapse_report, embedding_std, rankme, uniformity
from ssljax.evaluate.fewshot import fewshot_ridge
from ssljax.evaluate.knn import knn_top1, validate_split
from ssljax.evaluate.linear import linear_probe

__all__ = [
    "alignment",
    "collapse_report",
    "embedding_std",
    "fewshot_ridge",
    "knn_top1",
    "linear_probe",
    "rankme",
    "uniformity",
    "validate_split",
]
