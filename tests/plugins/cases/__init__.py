"""Labelled datasets for the quality checks (precision/recall tests)."""

from __future__ import annotations

from collections.abc import Iterable


def precision_recall(pairs: Iterable[tuple[bool, bool]]) -> tuple[float, float, int, int, int]:
    """(precision, recall, tp, fp, fn) of (expected, predicted) pairs."""
    tp = fp = fn = 0
    for expected, predicted in pairs:
        tp += expected and predicted
        fp += predicted and not expected
        fn += expected and not predicted
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, tp, fp, fn
