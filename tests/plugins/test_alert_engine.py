"""The evaluator over a real store (SQLite and PostgreSQL), with a clock the
test moves: every built-in rule below its threshold, pending, firing after
``for`` and resolved; keep_firing_for, grouping, the lease between two
evaluators, a rule that fails, drift, and what each metric measures."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from chainsight.framework.model import Alert, Sample, Score, Span
from chainsight.plugins.alert_engine import LEASE_NAME, Evaluator, ks_statistic, psi
from chainsight.plugins.alert_rules import DEFAULT_RULES, Rule, build_rule, load_rules
from chainsight.storage import alert_queries
from chainsight.storage.query import Store
from tests.plugins.cases.alerting import MINUTE, Clock, at, call, gpu, per_minute, write


def evaluator(url: str, rules: list[Rule], clock: Clock, **kwargs: object) -> tuple[Evaluator, list[Alert]]:
    emitted: list[Alert] = []
    store = Store(url)
    return Evaluator(store, rules, emitted.append, clock, **kwargs), emitted  # type: ignore[arg-type]


def default_rule(name: str) -> Rule:
    (rule,) = [r for r in load_rules({}) if r.name == name]
    return rule


# ---- each built-in rule: below, pending, firing after `for`, resolved ----------------


@dataclass(frozen=True)
class Scenario:
    rule: str
    data: Callable[[str], None]
    minutes: list[float]
    expected: list[tuple[float, str]]  # (minute of the evaluation, state emitted)


def _latency(url: str) -> None:
    # 10 calls a minute; in minutes 10-24, 4 of them take 4 s (p95 4 s).
    write(url, per_minute(range(40), lambda m, i: call(
        at(m, 5 * i), latency_s=4.0 if 10 <= m <= 24 and i < 4 else 0.3)))


def _errors(url: str) -> None:
    # 20 calls a minute; 2 of them fail in minutes 10-24 (10%; 2% of a window with one such minute).
    write(url, per_minute(range(40), lambda m, i: call(
        at(m, 2 * i), status="error" if 10 <= m <= 24 and i < 2 else "ok"), per=20))


def _gpu(url: str) -> None:
    # One sample a minute: 90% busy, 20% in minutes 10-29.
    write(url, samples=[gpu(m, 20.0 if 10 <= m <= 29 else 90.0) for m in range(40)])


def _daily_spend(url: str) -> None:
    # $10 a call, 10 calls a minute in minutes 0-19: $2000 in all, $1000 by minute 9.
    write(url, per_minute(range(20), lambda m, i: call(at(m, 5 * i), cost=10.0)))


def _expensive(url: str) -> None:
    write(url, [call(at(m, 1), cost=0.02) for m in range(30)] + [call(at(10, 7), cost=2.5)])


def _monthly(url: str) -> None:
    # $500 a minute (one call) in minutes 0-39: $10000 by minute 19, over it from 20.
    write(url, [call(at(m, 1), cost=500.0) for m in range(40)])


DAY = 24 * 60
SCENARIOS = [
    Scenario("p95_latency", _latency, list(range(35)), [(10, "pending"), (15, "firing"), (29, "resolved")]),
    Scenario("error_rate", _errors, list(range(35)), [(10, "pending"), (15, "firing"), (29, "resolved")]),
    Scenario("gpu_utilization_low", _gpu, list(range(40)),
             [(12, "pending"), (22, "firing"), (32, "resolved")]),
    Scenario("daily_spend", _daily_spend, [5, 8, 9, 10, 15, DAY + 5, DAY + 8, DAY + 9],
             [(10, "firing"), (DAY + 9, "resolved")]),
    Scenario("expensive_request", _expensive, list(range(20)), [(10, "firing"), (15, "resolved")]),
    Scenario("monthly_budget", _monthly, [10, 19, 20, 45, 30 * DAY + 18, 30 * DAY + 19],
             [(20, "firing"), (30 * DAY + 19, "resolved")]),
]


def test_the_scenarios_cover_every_built_in_rule() -> None:
    assert sorted(s.rule for s in SCENARIOS) == sorted(r["name"] for r in DEFAULT_RULES)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.rule)
def test_built_in_rule(scenario: Scenario, store_url: str) -> None:
    scenario.data(store_url)
    clock = Clock()
    rule = default_rule(scenario.rule)
    ev, emitted = evaluator(store_url, [rule], clock)
    seen: list[tuple[float, str]] = []
    try:
        for minute in scenario.minutes:
            clock.at_minute(minute)
            seen += [(minute, a.state) for a in ev.evaluate()]
    finally:
        ev.store.close()
    assert seen == scenario.expected
    # One alert: the same id through its states, started when it became pending.
    assert len({a.alert_id for a in emitted}) == 1
    first, last = emitted[0], emitted[-1]
    assert first.started_ns == last.started_ns == clock.at_minute(scenario.expected[0][0])
    assert last.ended_ns == clock.at_minute(scenario.expected[-1][0])
    assert first.severity == rule.severity and first.threshold == rule.threshold
    assert rule.holds(first.value or 0.0) and first.summary and "{" not in first.summary


def test_below_the_threshold_nothing_happens(sqlite_url: str) -> None:
    # Under 1% errors (one call in the 120-150 of a window), p95 0.2 s, a busy GPU,
    # cents a day, no call over $1.
    write(sqlite_url, per_minute(range(30), lambda m, i: call(
        at(m, 2 * i), status="error" if m == 3 and i == 0 else "ok", cost=0.0004), per=30),
        samples=[gpu(m, 95.0) for m in range(30)])
    clock = Clock()
    ev, emitted = evaluator(sqlite_url, load_rules({}), clock)
    for minute in range(30):
        clock.at_minute(minute)
        ev.evaluate()
    ev.store.close()
    assert emitted == []


def test_gpu_rule_needs_a_gpu(sqlite_url: str) -> None:
    write(sqlite_url, per_minute(range(10), lambda m, i: call(at(m, 5 * i))))
    clock = Clock()
    ev, _ = evaluator(sqlite_url, [default_rule("gpu_utilization_low")], clock)
    assert ev.read(ev.rules[0], clock.at_minute(9)) == []
    ev.store.close()


# ---- semantics -----------------------------------------------------------------------


def _error_rule(**changes: object) -> Rule:
    return build_rule({"name": "errors", "metric": "error_rate", "threshold": 0.01, "window": "1m",
                       **changes})


def test_keep_firing_for_holds_a_firing_alert(sqlite_url: str) -> None:
    # Errors in minutes 5-6 only; window 1m.
    write(sqlite_url, per_minute(range(20), lambda m, i: call(
        at(m, 5 * i), status="error" if 5 <= m <= 6 and i == 0 else "ok")))
    clock = Clock()
    ev, _ = evaluator(sqlite_url, [_error_rule(keep_firing_for="3m")], clock)
    seen = []
    for minute in range(15):
        clock.at_minute(minute)
        seen += [(minute, a.state) for a in ev.evaluate()]
    ev.store.close()
    # false from minute 7 on; kept firing through 7, 8, 9; resolved at 10 (3m after 7).
    assert seen == [(5, "firing"), (10, "resolved")]


def test_a_pending_alert_that_clears_becomes_inactive(sqlite_url: str) -> None:
    write(sqlite_url, per_minute(range(12), lambda m, i: call(
        at(m, 5 * i), status="error" if m == 5 and i == 0 else "ok")))
    clock = Clock()
    ev, emitted = evaluator(sqlite_url, [_error_rule(**{"for": "5m"})], clock)
    for minute in range(12):
        clock.at_minute(minute)
        ev.evaluate()
    ev.store.close()
    assert [(a.state, a.ended_ns) for a in emitted] == [("pending", None), ("inactive", clock.at_minute(6))]


def test_group_by_model_makes_one_alert_per_model(store_url: str) -> None:
    write(store_url, per_minute(range(3), lambda m, i: call(
        at(m, 5 * i), model="bad-model" if i % 2 else "good-model",
        status="error" if i % 2 and i < 5 else "ok")))
    clock = Clock()
    ev, emitted = evaluator(store_url, [_error_rule(group_by=["model"], labels={"team": "llm"})], clock)
    clock.at_minute(2)
    ev.evaluate()
    readings = {r.labels["model"]: r for r in ev.read(ev.rules[0])}
    ev.store.close()
    assert [a.labels for a in emitted] == [{"model": "bad-model", "team": "llm"}]
    assert readings["bad-model"].value == pytest.approx(0.4) and readings["good-model"].value == 0
    # The traces behind it are the failed calls of that model, newest first.
    assert len(emitted[0].trace_ids) == 2


def test_filters_by_model_provider_span_user_and_tag(sqlite_url: str) -> None:
    spans = [call(at(0, i), status="error", model="a", provider="p1", user="alice") for i in range(3)]
    spans += [call(at(0, 10 + i), model="b", provider="p2", name="summarize-v2") for i in range(2)]
    tagged = Span("rag", "chain", start_ns=at(0, 20))
    tagged.end_ns, tagged.status, tagged.tags = at(0, 21), "ok", ["prod"]
    child = call(at(0, 20), status="error")
    child.trace_id, child.parent_id = tagged.trace_id, tagged.span_id
    write(sqlite_url, [*spans, tagged, child])
    clock = Clock(at(1))
    ev, _ = evaluator(sqlite_url, [], clock)

    def rate(**changes: object) -> float | None:
        readings = ev.read(_error_rule(**changes))
        return readings[0].value if readings else None

    assert rate() == pytest.approx(4 / 6)
    assert rate(model="a") == 1.0 and rate(model="b") == 0.0
    assert rate(provider="p2") == 0.0
    assert rate(span="summarize*") == 0.0 and rate(span="nothing*") is None
    assert rate(user="alice") == 1.0
    assert rate(tag="prod") == 1.0
    assert rate(kind="chain") == 0.0 and rate(kind="any") == pytest.approx(4 / 7)
    ev.store.close()


# ---- the lease: one evaluator per store -------------------------------------------------


def test_one_evaluator_holds_the_lease_and_the_next_carries_on(store_url: str) -> None:
    write(store_url, per_minute(range(30), lambda m, i: call(
        at(m, 5 * i), status="error" if 5 <= m <= 15 and i == 0 else "ok")))
    rule = _error_rule(**{"for": "2m"})
    clock = Clock()

    def stored(alert: Alert) -> None:
        write(store_url, alerts=[alert])  # what observer.record_alert ends in

    a = Evaluator(Store(store_url), [rule], stored, clock, lease_ns=3 * MINUTE)
    b_emitted: list[Alert] = []
    b = Evaluator(Store(store_url), [rule], lambda x: (b_emitted.append(x), stored(x)), clock,
                  lease_ns=3 * MINUTE)
    a_states = []
    for minute in range(9):
        clock.at_minute(minute)
        a_states += [x.state for x in a.evaluate()]
        assert b.evaluate() == []  # a holds the lease
    assert a_states == ["pending", "firing"] and a.holding and not b.holding
    holder = alert_queries.lease_holder(a.store.engine, LEASE_NAME)
    assert holder is not None and holder[0] == a.holder

    # a stops (a crash: no release); b takes over once the lease expired.
    for minute in (9, 10, 11):
        clock.at_minute(minute)
        assert b.evaluate() == []
    clock.at_minute(12)
    b.evaluate()
    assert b.holding and b_emitted == []  # still firing: nothing new to say
    for minute in range(13, 20):
        clock.at_minute(minute)
        b.evaluate()
    (firing,) = a.store.list_alerts(state="resolved")
    assert [x.state for x in b_emitted] == ["resolved"] and b_emitted[0].alert_id == firing.alert_id
    a.store.close()
    b.store.close()


def test_released_lease_is_taken_at_once(sqlite_url: str) -> None:
    write(sqlite_url, [call(at(0))])
    clock = Clock(at(1))
    a, _ = evaluator(sqlite_url, [_error_rule()], clock)
    b, _ = evaluator(sqlite_url, [_error_rule()], clock)
    a.evaluate()
    b.evaluate()
    assert a.holding and not b.holding
    a.release()
    b.evaluate()
    assert b.holding
    a.store.close()
    b.store.close()


def test_alerts_of_a_removed_rule_end_when_taken_over(sqlite_url: str) -> None:
    old = Alert("gone_rule", "firing", value=3.0, started_ns=at(0), alert_id="old-1", source="rules")
    mine = Alert("my_plugins_alert", "firing", value=1.0, started_ns=at(0), alert_id="own-1")
    write(sqlite_url, alerts=[old, mine])
    clock = Clock(at(5))
    ev, emitted = evaluator(sqlite_url, [_error_rule()], clock)
    ev.evaluate()
    ev.store.close()
    # The evaluator's own alert ends; one a plugin recorded (no source) is not its to end.
    assert [(a.rule, a.state, a.alert_id) for a in emitted] == [("gone_rule", "resolved", "old-1")]


def test_a_holder_back_after_another_held_the_lease_reloads_the_alerts(sqlite_url: str) -> None:
    write(sqlite_url, per_minute(range(20), lambda m, i: call(
        at(m, 5 * i), status="error" if 2 <= m <= 8 and i == 0 else "ok")))
    rule = _error_rule()
    clock = Clock()

    def stored(alert: Alert) -> None:
        write(sqlite_url, alerts=[alert])

    a_said: list[Alert] = []
    a = Evaluator(Store(sqlite_url), [rule], lambda x: (a_said.append(x), stored(x)), clock,
                  lease_ns=3 * MINUTE)
    b = Evaluator(Store(sqlite_url), [rule], stored, clock, lease_ns=3 * MINUTE)
    clock.at_minute(2)
    a.evaluate()  # fires
    for minute in range(6, 12):  # a stalls (a long outage); b takes over and resolves it
        clock.at_minute(minute)
        b.evaluate()
    b.release()
    clock.at_minute(12)
    a.evaluate()  # back: it must not resolve again what b resolved
    a.store.close()
    b.store.close()
    assert [x.state for x in a_said] == ["firing"]
    with Store(sqlite_url) as store:
        assert [x.state for x in store.list_alerts()] == ["resolved"]


def test_a_failing_rule_does_not_stop_the_others(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    write(sqlite_url, per_minute(range(3), lambda m, i: call(at(m, 5 * i), status="error")))
    store = Store(sqlite_url)
    with store.engine.begin() as conn:  # the GPU rule's table is gone
        conn.execute(sa.text("ALTER TABLE samples RENAME TO samples_gone"))
    clock = Clock()
    clock.at_minute(2)
    emitted: list[Alert] = []
    ev = Evaluator(store, [default_rule("gpu_utilization_low"), _error_rule()], emitted.append, clock)
    ev.evaluate()
    ev.evaluate()
    store.close()
    assert [(a.rule, a.state) for a in emitted] == [("errors", "firing")]
    failures = [r for r in caplog.records if "gpu_utilization_low" in r.getMessage()]
    assert len(failures) == 1 and "cannot be evaluated" in failures[0].getMessage()  # said once


# ---- what each metric measures -------------------------------------------------------------


def _read(url: str, table: dict[str, object], minute: float = 5) -> list[tuple[dict[str, str], float]]:
    rule = build_rule({"name": "r", "threshold": 0, **table})
    ev, _ = evaluator(url, [rule], Clock(at(minute)))
    try:
        return [(r.labels, round(r.value, 6)) for r in ev.read(rule)]
    finally:
        ev.store.close()


def test_each_metric_measures_what_it_says(store_url: str) -> None:
    calls = [call(at(4, i), latency_s=0.1 * (i + 1), ttft_s=0.05 * (i + 1), cost=0.01 * (i + 1),
                  input_tokens=100, output_tokens=11) for i in range(10)]
    old = call(at(0), latency_s=99.0, cost=50.0)  # outside a 2m window
    checks = [Score("refusal", "check", c.trace_id, c.span_id, 1.0 if i < 2 else 0.0, None, i >= 2,
                    created_ns=at(4, 30)) for i, c in enumerate(calls)]
    checks += [Score("groundedness", "check", c.trace_id, None, 0.1 * i, None, i > 5,
                     created_ns=at(4, 30)) for i, c in enumerate(calls)]
    samples = [Sample("chainsight_spans_dropped_total", v, "pipeline", at(m), {"process": p})
               for p, values in (("1", [5, 7, 12]), ("2", [0, 3, 3])) for m, v in zip((2, 3, 4), values, strict=True)]
    samples += [gpu(3, 1e9, name="llm_gpu_memory_used_bytes"), gpu(4, 3e9, name="llm_gpu_memory_used_bytes")]
    write(store_url, [*calls, old], scores=checks, samples=samples)
    w = {"window": "2m"}
    assert _read(store_url, {"metric": "latency_p50", **w}) == [({}, 0.55)]
    assert _read(store_url, {"metric": "latency_p90", **w}) == [({}, 0.91)]
    assert _read(store_url, {"metric": "ttft_p50", **w}) == [({}, 0.275)]
    assert _read(store_url, {"metric": "tpot_p50", **w}) == [({}, pytest.approx(0.0275))]
    assert _read(store_url, {"metric": "request_cost", **w}) == [({}, 0.1)]
    assert _read(store_url, {"metric": "spend", **w}) == [({}, 0.55)]
    assert _read(store_url, {"metric": "spend", "window": "10m"}) == [({}, 50.55)]
    assert _read(store_url, {"metric": "requests_per_s", **w}) == [({}, round(10 / 120, 6))]
    assert _read(store_url, {"metric": "tokens_per_s", **w}) == [({}, round(1110 / 120, 6))]
    assert _read(store_url, {"metric": "refusal_rate", **w}) == [({}, 0.2)]
    assert _read(store_url, {"metric": "check_failure_rate", "check": "groundedness", **w}) == [({}, 0.6)]
    assert _read(store_url, {"metric": "score_mean", "check": "groundedness", **w}) == [({}, 0.45)]
    assert _read(store_url, {"metric": "gpu_memory_used_bytes", **w}) == [({"gpu_id": "0"}, 2e9)]
    # Each process's counter grew over the 2m window (from its value before it): 7 and 3.
    assert _read(store_url, {"metric": "dropped_spans", "window": "150s"}) == [({}, 10.0)]
    assert _read(store_url, {"metric": "failed_spans", **w}) == []


def test_percentiles_read_a_bounded_number_of_rows(sqlite_url: str) -> None:
    write(sqlite_url, [call(at(1, 0) + i * 1000, latency_s=i / 1000) for i in range(5000)])
    rule = build_rule({"name": "r", "metric": "latency_p99", "threshold": 99, "window": "5m"})
    store = Store(sqlite_url)
    statements: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(" ".join(statement.split()))

    ev = Evaluator(store, [rule], lambda _a: None, Clock(at(3)), lease=False)
    (reading,) = ev.read(rule)
    store.close()
    assert reading.value == pytest.approx(4.94901)  # percentile_cont over 5000 values
    # A count, the two neighbouring values, the traces over the threshold (LIMITed): no full fetch.
    assert len(statements) == 3
    assert "count(*)" in statements[0]
    assert all("LIMIT" in sql for sql in statements[1:])


# ---- drift ----------------------------------------------------------------------------------


def _lengths(url: str, shift: float, seed: int = 1) -> None:
    """600 reference lengths in the hour before the last 10 minutes, 300 in them."""
    rng = random.Random(seed)
    reference = [call(at(-60 + m, i), output_tokens=max(1, int(rng.gauss(200, 30))))
                 for m in range(50) for i in range(0, 60, 5)]
    recent = [call(at(m, i), output_tokens=max(1, int(rng.gauss(200 * shift, 30))))
              for m in range(10) for i in range(0, 60, 2)]
    write(url, [*reference, *recent])


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_drift_fires_on_a_shifted_length_distribution(store_url: str, method: str) -> None:
    _lengths(store_url, shift=1.6)
    rule = build_rule({"name": "length_drift", "metric": "drift", "field": "output_tokens",
                       "window": "10m", "reference_window": "1h", "threshold": 0.2, "method": method})
    clock = Clock(at(10))
    ev, emitted = evaluator(store_url, [rule], clock)
    ev.evaluate()
    ev.store.close()
    assert [(a.state, a.labels) for a in emitted] == [("firing", {"model": "gpt-4o"})]
    assert (emitted[0].value or 0) > (1.0 if method == "psi" else 0.5)


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_drift_stays_quiet_on_an_unshifted_one(store_url: str, method: str) -> None:
    _lengths(store_url, shift=1.0, seed=2)
    rule = build_rule({"name": "length_drift", "metric": "drift", "field": "output_tokens",
                       "window": "10m", "reference_window": "1h", "threshold": 0.2, "method": method})
    ev, emitted = evaluator(store_url, [rule], Clock(at(10)))
    ev.evaluate()
    (reading,) = ev.read(rule)
    ev.store.close()
    assert emitted == [] and reading.value < 0.15


def test_drift_needs_enough_values_in_both_windows(sqlite_url: str) -> None:
    write(sqlite_url, [call(at(-30), output_tokens=10)] + [call(at(5, i), output_tokens=500) for i in range(60)])
    rule = build_rule({"name": "d", "metric": "drift", "field": "output_tokens", "window": "10m",
                       "reference_window": "1h", "threshold": 0.2})
    ev, _ = evaluator(sqlite_url, [rule], Clock(at(10)))
    assert ev.read(rule) == []
    ev.store.close()


def test_drift_of_a_check_score(sqlite_url: str) -> None:
    rng = random.Random(3)
    before = [call(at(-30, i)) for i in range(100)]
    after = [call(at(5, i / 2)) for i in range(100)]
    scores = [Score("length", "check", c.trace_id, c.span_id, rng.gauss(400, 50), created_ns=c.start_ns)
              for c in before] + [Score("length", "check", c.trace_id, c.span_id, rng.gauss(900, 50),
                                        created_ns=c.start_ns) for c in after]
    write(sqlite_url, [*before, *after], scores=scores)
    rule = build_rule({"name": "d", "metric": "drift", "field": "score", "check": "length",
                       "window": "10m", "reference_window": "1h", "threshold": 0.2})
    ev, _ = evaluator(sqlite_url, [rule], Clock(at(10)))
    (reading,) = ev.read(rule)
    ev.store.close()
    assert reading.holds and reading.labels == {"model": "gpt-4o"}


def test_psi_and_ks_by_hand() -> None:
    same = [float(i % 100) for i in range(1000)]
    assert psi(same, same) == pytest.approx(0.0)
    assert ks_statistic(same, same) == 0.0
    assert ks_statistic([1.0, 2.0], [3.0, 4.0]) == 1.0
    # Half the mass moved from the lower to the upper half.
    shifted = [v + 50 for v in same]
    assert psi(same, shifted) > 1.0
    assert ks_statistic(same, shifted) == pytest.approx(0.5)
    assert psi([5.0] * 100, [5.0] * 50 + [6.0] * 50) > 0.2  # repeated values: fewer bins


def test_spans_at_the_window_edges(sqlite_url: str) -> None:
    # [now - window, now): a call at the window's start counts, one at now does not.
    write(sqlite_url, [call(at(0), status="error"), call(at(1), status="ok")])
    rule = _error_rule()
    ev, _ = evaluator(sqlite_url, [rule], Clock(at(1)))
    assert [r.value for r in ev.read(rule)] == [1.0]
    ev.store.close()


def test_a_rule_over_too_many_groups_evaluates_the_largest_and_says_so_once(
        sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    write(sqlite_url, [call(at(0, i % 50), model=f"m{i:03d}", status="error")
                       for i in range(alert_queries.MAX_GROUPS + 5)]
          + [call(at(0, 55), model="m000", status="error")])
    rule = _error_rule(group_by=["model"])
    ev, _ = evaluator(sqlite_url, [rule], Clock(at(1)))
    first, second = ev.read(rule), ev.read(rule)
    ev.store.close()
    assert len(first) == len(second) == alert_queries.MAX_GROUPS
    assert any(r.labels == {"model": "m000"} for r in first)  # the largest group is kept
    assert len([r for r in caplog.records if "only the 100 largest" in r.getMessage()]) == 1
