"""Confidence intervals and a paired significance test, with the standard library.

* :func:`mean_ci`: the mean and a 95% percentile-bootstrap interval.
* :func:`paired_test`: the two-sided p-value of a paired sign-flip
  (permutation) test on the per-item differences: exact when at most 16
  differences are non-zero, else Monte Carlo over 20,000 random sign
  assignments. It makes no normality assumption, which matters for 0/1
  metrics such as exact match (where it is McNemar's exact test in effect).
* :func:`delta_ci`: a bootstrap interval of the mean paired difference.

Resampling uses a fixed seed, so the same scores give the same figures.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 2000
SIGN_FLIPS = 20_000
EXACT_UP_TO = 16
SEED = 20261127


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def _bootstrap_means(values: Sequence[float], resamples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    return sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))


def _percentiles(sorted_means: Sequence[float], level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    last = len(sorted_means) - 1
    return sorted_means[round(alpha * last)], sorted_means[round((1 - alpha) * last)]


def mean_ci(values: Sequence[float], level: float = 0.95, *, resamples: int = RESAMPLES,
            seed: int = SEED) -> Interval | None:
    """The mean of ``values`` with a bootstrap interval; None when empty.
    One value (or all equal) gives a zero-width interval."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(set(values)) == 1:
        return Interval(mean, mean, mean, len(values))
    low, high = _percentiles(_bootstrap_means(values, resamples, seed), level)
    return Interval(mean, low, high, len(values))


def delta_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval | None:
    """Mean of ``b - a`` (paired) with a bootstrap interval."""
    return mean_ci([y - x for x, y in zip(a, b, strict=True)], level)


def paired_test(a: Sequence[float], b: Sequence[float], *, seed: int = SEED) -> float:
    """Two-sided p-value that the paired differences ``b - a`` are centred on 0."""
    diffs = [y - x for x, y in zip(a, b, strict=True) if y != x]
    if not diffs:
        return 1.0
    observed = abs(sum(diffs)) - 1e-12
    if len(diffs) <= EXACT_UP_TO:
        hits = sum(abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed
                   for signs in itertools.product((1, -1), repeat=len(diffs)))
        return hits / 2 ** len(diffs)
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed
               for _ in range(SIGN_FLIPS))
    return (hits + 1) / (SIGN_FLIPS + 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
