"""Two experiments item by item: per-score deltas with a paired test, the
items that regressed, and the gates CI runs on.

Items are paired by dataset item when both experiments ran on the same
dataset version, else by their input (and its occurrence). A score compares
on the items both experiments scored. Every score is read as "higher is
better" (the ``evaluate`` hook's contract; online checks count as 1 passed,
0 failed); an item regressed on a score when B's value is below A's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chainsight.framework.eval import stats
from chainsight.storage.evaluation import EvalStore, Experiment, ExperimentResult, item_keys

EPSILON = 1e-9


@dataclass(frozen=True)
class MetricDelta:
    name: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    p_value: float
    regressed: int  # items where B < A
    improved: int


@dataclass(frozen=True)
class Regression:
    item_id: str | None
    metric: str
    a: float
    b: float
    result_a: ExperimentResult
    result_b: ExperimentResult


@dataclass(frozen=True)
class Comparison:
    a: Experiment
    b: Experiment
    paired: int
    only_a: int
    only_b: int
    metrics: list[MetricDelta]
    regressions: list[Regression]

    def metric(self, name: str) -> MetricDelta | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def regressed_items(self) -> list[str | None]:
        """Each regressed item once, in dataset order."""
        seen: dict[str | None, None] = {}
        for r in self.regressions:
            seen.setdefault(r.item_id, None)
        return list(seen)


def pair(a: Experiment, results_a: Sequence[ExperimentResult], b: Experiment,
         results_b: Sequence[ExperimentResult]) -> list[tuple[ExperimentResult, ExperimentResult]]:
    if a.dataset_id is not None and a.dataset_id == b.dataset_id:
        by_item = {r.item_id: r for r in results_b}
        return [(r, by_item[r.item_id]) for r in results_a if r.item_id in by_item]
    keyed_b = item_keys(results_b)
    return [(r, keyed_b[key]) for key, r in item_keys(results_a).items() if key in keyed_b]


def compare_results(a: Experiment, results_a: Sequence[ExperimentResult], b: Experiment,
                    results_b: Sequence[ExperimentResult]) -> Comparison:
    pairs = pair(a, results_a, b, results_b)
    names = sorted({n for ra, rb in pairs for n in ra.scores if n in rb.scores})
    metrics: list[MetricDelta] = []
    regressions: list[Regression] = []
    for name in names:
        both: list[tuple[ExperimentResult, ExperimentResult, float, float]] = []
        for ra, rb in pairs:
            x, y = ra.scores.get(name), rb.scores.get(name)
            if x is not None and y is not None:
                both.append((ra, rb, x, y))
        if not both:
            continue
        va = [x[2] for x in both]
        vb = [x[3] for x in both]
        interval = stats.delta_ci(va, vb)
        assert interval is not None
        worse = [(ra, rb, x, y) for (ra, rb, _, _), x, y in zip(both, va, vb, strict=True) if y < x - EPSILON]
        better = sum(1 for x, y in zip(va, vb, strict=True) if y > x + EPSILON)
        metrics.append(MetricDelta(name, len(both), sum(va) / len(va), sum(vb) / len(vb),
                                   interval.mean, interval.low, interval.high,
                                   stats.paired_test(va, vb), len(worse), better))
        regressions += [Regression(rb.item_id, name, x, y, ra, rb) for ra, rb, x, y in worse]
    order = {id(ra): i for i, (ra, _) in enumerate(pairs)}
    regressions.sort(key=lambda r: (order.get(id(r.result_a), 0), r.metric))
    return Comparison(a, b, len(pairs), len(results_a) - len(pairs), len(results_b) - len(pairs),
                      metrics, regressions)


def compare(store: EvalStore, a_ref: str, b_ref: str) -> Comparison:
    """Experiment ``b_ref`` against the baseline ``a_ref`` (ids, id ends or names)."""
    a, b = store.get_experiment(a_ref), store.get_experiment(b_ref)
    return compare_results(a, store.results(a.experiment_id), b, store.results(b.experiment_id))


# --------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------


class GateError(ValueError):
    """A gate that cannot be read (``--fail-under x``, an unknown baseline...)."""


def parse_gates(texts: Sequence[str], flag: str) -> dict[str, float]:
    """``["exact_match=0.9", ...]`` -> ``{"exact_match": 0.9}``."""
    gates: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise GateError(f"{flag} {text!r}: use SCORE=NUMBER, e.g. {flag} exact_match=0.9")
        gates[name.strip()] = number
    return gates


def check_gates(summary: Mapping[str, Any], fail_under: Mapping[str, float],
                max_regression: Mapping[str, float],
                comparison: Comparison | None) -> list[str]:
    """One sentence per failed gate (empty: all passed)."""
    failed: list[str] = []
    scores = summary.get("scores", {})
    for name, threshold in fail_under.items():
        entry = scores.get(name)
        if entry is None:
            known = ", ".join(sorted(scores)) or "none"
            failed.append(f"--fail-under {name}={threshold:g}: no scores named {name!r} (scores: {known})")
        elif entry["mean"] < threshold:
            failed.append(f"--fail-under {name}={threshold:g}: mean {entry['mean']:.4f} is below {threshold:g}")
    if max_regression and comparison is None:
        raise GateError("--max-regression needs --baseline EXPERIMENT")
    for name, allowed in max_regression.items():
        assert comparison is not None
        delta = comparison.metric(name)
        if delta is None:
            failed.append(f"--max-regression {name}={allowed:g}: {name!r} was not scored by both "
                          f"this run and the baseline {comparison.a.name!r}")
        elif -delta.delta > allowed + EPSILON:
            failed.append(f"--max-regression {name}={allowed:g}: fell by {-delta.delta:.4f} from the "
                          f"baseline {comparison.a.name!r} ({delta.mean_a:.4f} -> {delta.mean_b:.4f}, "
                          f"{delta.regressed} item(s) worse)")
    return failed
