"""The alert evaluator: rules over the store, with Prometheus' semantics.

:class:`Evaluator` measures every rule over its window of the store (so the
spans of every process writing it count), and moves each series (a rule and
its labels) through Prometheus' states, on each call of
:meth:`Evaluator.evaluate`:

* the comparison holds and the series is new: *pending* (``started_ns`` is
  now), or at once *firing* when ``for`` is 0;
* pending, and it has held for ``for``: *firing*;
* it stopped holding: a pending series becomes *inactive*; a firing one
  *resolved*, unless ``keep_firing_for`` has not passed since it stopped.

Each transition is one :class:`~chainsight.framework.model.Alert` (the same
``alert_id`` for one series until it ends) handed to ``emit``: in an
observer that is ``observer.record_alert``, which stores it and calls the
``alert_changed`` hooks (the notifiers). No data in the window (no requests,
no GPU samples) means no series, as in Prometheus.

One evaluator per store fires: each round starts by taking or renewing a
lease in the store (``leases`` table); an evaluator that does not hold it
does nothing, and the one that takes it over carries on the pending and
firing alerts stored by the previous holder. The clock is a parameter, so
tests drive time by hand; :class:`EvaluatorThread` runs rounds on a timer.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework.model import Alert, new_ordered_id
from chainsight.framework.store_api import StoreMisconfigured, StoreUnavailable
from chainsight.plugins.alert_rules import Rule, render, template_context
from chainsight.storage import alert_queries as q
from chainsight.storage.engine import StoreNotFound, display_url, translate_errors
from chainsight.storage.serialize import key_text

if TYPE_CHECKING:
    from chainsight.storage.query import Store

log = logging.getLogger("chainsight.alerts")

LEASE_NAME: Final = "alert-evaluator"
SOURCE: Final = "rules"  # Alert.source of what the evaluator records
SECOND: Final = 10**9
SAMPLE_NAMES: Final = {"gpu_utilization": "llm_gpu_utilization_percent",
                       "gpu_memory_used_bytes": "llm_gpu_memory_used_bytes"}
COUNTER_NAMES: Final = {"dropped_spans": "chainsight_spans_dropped_total",
                        "failed_spans": "chainsight_spans_failed_total"}


def new_holder() -> str:
    """A lease holder id: host, process and a random part (one per evaluator)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class _Series:
    """What the evaluator remembers of one active series."""

    alert_id: str
    state: str  # pending or firing
    active_ns: int
    value: float | None
    labels: dict[str, str]
    trace_ids: tuple[str, ...] = ()
    count: int = 0
    keep_since_ns: int | None = None


@dataclass(frozen=True)
class Reading:
    """A rule's value for one series now, and whether its comparison holds."""

    rule: Rule
    labels: dict[str, str]
    value: float
    count: int
    holds: bool
    trace_ids: tuple[str, ...] = ()


@dataclass
class Evaluator:
    """Evaluates ``rules`` over ``store`` at the times ``clock()`` gives
    (ns since the epoch), handing each transition to ``emit``.

    ``lease=False`` evaluates without the store's lease (one evaluator known
    to be alone, or ``chainsight alerts test``). Not thread-safe: one
    thread calls :meth:`evaluate`.
    """

    store: Store
    rules: Sequence[Rule]
    emit: Callable[[Alert], None]
    clock: Callable[[], int] = time.time_ns
    holder: str = field(default_factory=new_holder)
    lease_ns: int = 120 * SECOND
    lease: bool = True
    max_trace_ids: int = 20
    holding: bool = False
    _series: dict[tuple[str, str], _Series] = field(default_factory=dict)
    _failing: dict[str, str] = field(default_factory=dict)
    _acquired_ns: int | None = None

    # ---- one round ----------------------------------------------------------
    def evaluate(self) -> list[Alert]:
        """One round at ``clock()``: every rule, if this evaluator holds the
        lease. Returns the transitions it emitted. A rule whose query fails
        is logged (once until it works again) and skipped; the others run.
        :class:`~chainsight.framework.store_api.StoreUnavailable` (the store
        is down) is raised: nothing can be evaluated."""
        now = self.clock()
        with translate_errors(self.store.url):
            if not self._hold_lease(now):
                return []
        emitted: list[Alert] = []
        for rule in self.rules:
            try:
                with translate_errors(self.store.url):
                    readings = self.read(rule, now)
            except Exception as exc:
                if _is_unavailable(exc):
                    raise
                self._rule_failed(rule, exc)
                continue
            if self._failing.pop(rule.name, None) is not None:
                log.info("alert rule %r evaluates again", rule.name)
            emitted += self._step(rule, readings, now)
        emitted += self._retire_unknown(now)
        for alert in emitted:
            self.emit(alert)
        return emitted

    def release(self) -> None:
        """Give the lease up (at shutdown), so another process takes over at once."""
        if self.lease and self.holding:
            self.holding = False
            with translate_errors(self.store.url):
                q.release_lease(self.store.engine, LEASE_NAME, self.holder)

    def _hold_lease(self, now: int) -> bool:
        if not self.lease:
            if not self.holding:
                self.holding = True
                self._take_over()
            return True
        held, acquired = q.acquire_lease(self.store.engine, LEASE_NAME, self.holder, now, self.lease_ns)
        if held and (not self.holding or acquired != self._acquired_ns):
            # New, or another process held it meanwhile (a long outage): the store knows best.
            self._take_over()
            log.info("alert evaluator %s evaluates %d rules over %s", self.holder, len(self.rules),
                     display_url(self.store.url))
        elif not held and self.holding:
            log.info("alert evaluator %s lost the lease; another process evaluates", self.holder)
            self._series.clear()
        self.holding, self._acquired_ns = held, acquired
        return held

    def _take_over(self) -> None:
        """Carry on the alerts a previous evaluator left pending or firing."""
        self._series.clear()
        for state in ("pending", "firing"):
            for alert in self.store.list_alerts(state=state, limit=100_000, source=SOURCE):
                key = (alert.rule, key_text(alert.labels))
                self._series[key] = _Series(alert.alert_id, alert.state, alert.started_ns,
                                            alert.value, dict(alert.labels), alert.trace_ids)

    def _rule_failed(self, rule: Rule, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if self._failing.get(rule.name) != text:
            log.error("alert rule %r cannot be evaluated: %s", rule.name, text)
        self._failing[rule.name] = text

    # ---- the state machine ---------------------------------------------------------
    def _step(self, rule: Rule, readings: Sequence[Reading], now: int) -> list[Alert]:
        out: list[Alert] = []
        seen: set[tuple[str, str]] = set()
        for r in readings:
            if not r.holds:
                continue
            key = (rule.name, key_text(r.labels))
            seen.add(key)
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = _Series(new_ordered_id(), "pending", now, r.value,
                                                dict(r.labels), r.trace_ids, r.count)
                if rule.for_ns > 0:
                    out.append(self._alert(rule, s, "pending"))
                    continue
            s.value, s.count, s.keep_since_ns = r.value, r.count, None
            s.trace_ids = r.trace_ids or s.trace_ids
            if s.state == "pending" and now - s.active_ns >= rule.for_ns:
                s.state = "firing"
                out.append(self._alert(rule, s, "firing"))
        for key in [k for k in self._series if k[0] == rule.name and k not in seen]:
            s = self._series[key]
            if s.state == "firing" and rule.keep_firing_for_ns > 0:
                if s.keep_since_ns is None:
                    s.keep_since_ns = now
                if now - s.keep_since_ns < rule.keep_firing_for_ns:
                    continue
            del self._series[key]
            out.append(self._alert(rule, s, "resolved" if s.state == "firing" else "inactive", now))
        return out

    def _retire_unknown(self, now: int) -> list[Alert]:
        """Alerts of rules no longer configured end (taken over from the store)."""
        names = {r.name for r in self.rules}
        out = []
        for key in [k for k in self._series if k[0] not in names]:
            s = self._series.pop(key)
            out.append(Alert(key[0], "resolved" if s.state == "firing" else "inactive",
                             value=s.value, started_ns=s.active_ns, ended_ns=now,
                             summary="the rule is no longer configured", labels=s.labels,
                             alert_id=s.alert_id, trace_ids=s.trace_ids, source=SOURCE))
        return out

    def _alert(self, rule: Rule, s: _Series, state: str, ended_ns: int | None = None) -> Alert:
        context = template_context(rule, s.value, s.labels, s.count)
        return Alert(rule.name, state, rule.severity, s.value, rule.threshold, s.active_ns, ended_ns,
                     render(rule.summary, context), dict(s.labels), s.alert_id,
                     render(rule.description, context), s.trace_ids, SOURCE)

    # ---- measuring -------------------------------------------------------------------
    def read(self, rule: Rule, now: int | None = None) -> list[Reading]:
        """``rule``'s value for each series at ``now`` (default ``clock()``),
        without changing any state: ``chainsight alerts test``."""
        now = self.clock() if now is None else now
        return [Reading(rule, {**m.labels, **rule.labels}, m.value, m.count,
                        not math.isnan(m.value) and rule.holds(m.value), m.trace_ids)
                for m in measure(self.store.engine, rule, now, self.max_trace_ids)]


def measure(engine: Any, rule: Rule, now: int, max_traces: int = 20) -> list[q.Measured]:
    """What ``rule`` measures over its window ending at ``now``, per group."""
    since, metric, select, groups = now - rule.window_ns, rule.base_metric, rule.select, rule.group_by
    worse = (rule.op, rule.threshold)
    window_s = rule.window_ns / SECOND
    if rule.quantile is not None:
        return q.span_quantile(engine, metric, rule.quantile, since, now, select, groups, worse,
                               max_traces)
    if metric == "error_rate":
        return q.span_error_rate(engine, since, now, select, groups, max_traces)
    if metric == "request_cost":
        return q.span_aggregate(engine, "max", "cost", since, now, select, groups, worse, max_traces)
    if metric == "spend":
        return q.span_aggregate(engine, "sum", "cost", since, now, select, groups, (">", 0.0),
                                max_traces)
    if metric in ("requests_per_s", "tokens_per_s"):
        measured = (q.span_aggregate(engine, "count", None, since, now, select, groups)
                    if metric == "requests_per_s" else
                    q.span_aggregate(engine, "sum", "tokens", since, now, select, groups))
        return [q.Measured(m.labels, m.value / window_s, m.count) for m in measured]
    if metric in ("refusal_rate", "check_failure_rate"):
        return q.check_verdicts(engine, rule.check or "refusal", since, now, select, groups,
                                max_traces)
    if metric == "score_mean":
        out = []
        for values, traces in q.score_values(engine, rule.check or "", since, now, select, groups):
            worst = sorted((v, t) for v, t in zip(values.values, traces, strict=True) if rule.holds(v))
            if rule.op not in ("<", "<="):
                worst.reverse()
            out.append(q.Measured(values.labels, sum(values.values) / len(values.values),
                                  len(values.values),
                                  tuple(dict.fromkeys(t for _, t in worst))[:max_traces]))
        return out
    if metric in SAMPLE_NAMES:
        return q.sample_means(engine, SAMPLE_NAMES[metric], since, now, "gpu_id")
    if metric in COUNTER_NAMES:
        total = q.counter_increase(engine, COUNTER_NAMES[metric], since, now)
        return [] if total is None else [total]
    if metric == "drift":
        return _drift(engine, rule, now)
    raise ValueError(f"rule {rule.name!r}: unknown metric {rule.metric!r}")


# ---- drift ---------------------------------------------------------------------------

def _drift(engine: Any, rule: Rule, now: int) -> list[q.Measured]:
    """The recent window against the reference window just before it, per group."""
    recent_since = now - rule.window_ns
    reference_since = recent_since - rule.reference_window_ns

    def values(since: int, until: int) -> dict[str, q.Values]:
        if rule.field == "score":
            found = [v for v, _ in q.score_values(engine, rule.check or "", since, until,
                                                  rule.select, rule.group_by)]
        else:
            found = q.span_values(engine, rule.field or "latency", since, until, rule.select,
                                  rule.group_by)
        return {key_text(v.labels): v for v in found}

    recent = values(recent_since, now)
    reference = values(reference_since, recent_since)
    out = []
    for key, current in recent.items():
        before = reference.get(key)
        if before is None or min(len(before.values), len(current.values)) < rule.min_samples:
            continue
        score = (ks_statistic(before.values, current.values) if rule.method == "ks"
                 else psi(before.values, current.values, rule.bins))
        out.append(q.Measured(current.labels, score, len(current.values)))
    return out


PSI_FLOOR: Final = 1e-4


def psi(reference: Sequence[float], recent: Sequence[float], bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference``:
    sum over bins of (recent% - reference%) * ln(recent% / reference%), the
    bins cut at the reference's quantiles (fewer when values repeat; a bin
    holds the values up to its upper edge, so a repeated value has a bin of
    its own), empty bins counted as ``PSI_FLOOR``. Under 0.1: no shift; over 0.2: a
    significant one (the usual reading)."""
    from chainsight.storage.query import percentile

    ordered = sorted(reference)
    edges = sorted({e for i in range(1, bins) if (e := percentile(ordered, i / bins)) is not None})

    def shares(values: Sequence[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for v in values:
            counts[bisect.bisect_left(edges, v)] += 1
        return [max(c / len(values), PSI_FLOOR) for c in counts]

    expected, actual = shares(reference), shares(recent)
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


def ks_statistic(reference: Sequence[float], recent: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest distance
    between the two empirical distribution functions (0..1)."""
    a, b = sorted(reference), sorted(recent)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        x = min(a[i], b[j])
        while i < len(a) and a[i] == x:
            i += 1
        while j < len(b) and b[j] == x:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


# ---- the timer -------------------------------------------------------------------------


class EvaluatorThread(threading.Thread):
    """Calls ``evaluate()`` every ``interval_s`` on a daemon thread.

    ``make`` builds the evaluator; it is called again after it raised (the
    store did not exist yet, or was down). Each problem is logged once, and
    again only after a round succeeded in between; nothing stops the timer.
    """

    def __init__(self, make: Callable[[], Evaluator], interval_s: float,
                 name: str = "chainsight-alerts") -> None:
        super().__init__(name=name, daemon=True)
        self._make = make
        self.interval_s = max(0.01, interval_s)
        self.evaluator: Evaluator | None = None
        self._stop_event = threading.Event()
        self._said: set[str] = set()
        self.rounds = 0

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.run_once()

    def run_once(self) -> None:
        try:
            if self.evaluator is None:
                self.evaluator = self._make()
            self.evaluator.evaluate()
            self.rounds += 1
            self._said.clear()
        except Exception as exc:
            self._problem(exc)

    def _problem(self, exc: Exception) -> None:
        if isinstance(exc, StoreNotFound):  # nothing recorded yet: not a problem
            return
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if text not in self._said:
            self._said.add(text)
            log.error("alert evaluation failed (retried every %gs): %s", self.interval_s, text)

    def stop(self, timeout: float) -> None:
        """Stop the timer and give the lease up (within ``timeout`` seconds)."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        evaluator = self.evaluator
        if evaluator is not None:
            try:
                evaluator.release()
            except Exception as exc:
                log.info("alert evaluator: the lease was not released (%s); it expires by itself",
                         exc)
            evaluator.store.close()


def _is_unavailable(exc: BaseException) -> bool:
    """The store is down or locked (transient), not misconfigured."""
    return isinstance(exc, StoreUnavailable) and not isinstance(exc, StoreMisconfigured)
