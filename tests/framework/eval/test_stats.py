"""The statistics of summaries and comparisons, checked against values worked by hand."""

from __future__ import annotations

import pytest

from chainsight.framework.eval import stats


def test_paired_sign_flip_test_exact_values() -> None:
    # three items each fell by 1: of the 8 sign assignments, 2 reach |sum| = 3
    assert stats.paired_test([1, 1, 1, 1], [0, 0, 0, 1]) == 0.25
    assert stats.paired_test([1, 0], [1, 0]) == 1.0
    # one worse, one better by the same amount: every assignment reaches |sum| >= 0
    assert stats.paired_test([1, 0], [0, 1]) == 1.0
    # ten items all worse: only the two all-equal-sign assignments of 2**10
    assert stats.paired_test([1.0] * 10, [0.0] * 10) == pytest.approx(2 / 1024)


def test_many_differences_use_monte_carlo_deterministically() -> None:
    a, b = [1.0] * 40, [0.0] * 20 + [1.0] * 20
    p = stats.paired_test(a, b)
    assert p == stats.paired_test(a, b) and p < 0.001


def test_mean_ci() -> None:
    assert stats.mean_ci([]) is None
    same = stats.mean_ci([0.5, 0.5])
    assert same is not None and (same.mean, same.low, same.high, same.n) == (0.5, 0.5, 0.5, 2)
    interval = stats.mean_ci([1.0] * 28 + [0.0] * 2)
    assert interval is not None and interval.mean == pytest.approx(28 / 30)
    assert interval.low < interval.mean < interval.high <= 1.0
    assert interval == stats.mean_ci([1.0] * 28 + [0.0] * 2)  # seeded


def test_percentile() -> None:
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
