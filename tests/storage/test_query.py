from __future__ import annotations

import pytest
from storage_builders import MS, three_level_trace

from chainsight.framework.model import Sample, Score
from chainsight.storage.query import Store, TraceFilter, percentile
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture
def seeded(store_url: str) -> tuple[Store, list[str]]:
    """12 traces, 1 s apart, varied in every filterable way."""
    spans, ids = [], []
    for i in range(12):
        trace = three_level_trace(
            T0 + i * S,
            name="rag" if i % 2 else "summarise",
            user_id="alice" if i < 6 else "bob",
            session_id=f"s{i % 3}",
            model="gpt-4o" if i % 3 else "claude-3",
            cost=None if i == 0 else 0.001 * i,
            error=i % 4 == 0,
            tags=["prod"] if i % 2 else ["dev", "nightly"],
            duration_ms=100 + 100 * i,
        )
        trace[0].inputs = {"question": f"question number {i}"}
        spans += trace
        ids.append(trace[0].trace_id)
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(
        spans=spans,
        scores=[Score("helpful", "check", ids[1], value=1.0, passed=True),
                Score("helpful", "check", ids[1], value=0.0, passed=False)],
        samples=[Sample("gpu_util", 10.0, time_ns=T0 + S + 50 * MS),
                 Sample("gpu_util", 99.0, time_ns=T0 + 100 * S)],
    ))
    writer.close()
    return Store(store_url), ids


def names(store: Store, f: TraceFilter) -> set[int]:
    page = store.list_traces(f, limit=100)
    assert store.count_traces(f) == len(page.items)
    return {int(t.start_ns - T0) // S for t in page.items}


def test_each_filter(seeded: tuple[Store, list[str]]) -> None:
    store, _ = seeded
    assert names(store, TraceFilter()) == set(range(12))
    assert names(store, TraceFilter(status="error")) == {0, 4, 8}
    assert names(store, TraceFilter(name="RAG")) == {1, 3, 5, 7, 9, 11}
    assert names(store, TraceFilter(model="claude-3")) == {0, 3, 6, 9}
    assert names(store, TraceFilter(user_id="bob")) == set(range(6, 12))
    assert names(store, TraceFilter(session_id="s1")) == {1, 4, 7, 10}
    assert names(store, TraceFilter(tag="nightly")) == {0, 2, 4, 6, 8, 10}
    assert names(store, TraceFilter(tag="night")) == set()
    assert names(store, TraceFilter(since_ns=T0 + 3 * S, until_ns=T0 + 5 * S)) == {3, 4}
    assert names(store, TraceFilter(min_cost=0.0095)) == {10, 11}
    assert names(store, TraceFilter(min_latency_s=1.0)) == {9, 10, 11}
    assert names(store, TraceFilter(text="NUMBER 1")) == {1, 10, 11}
    assert names(store, TraceFilter(text="100%")) == set()
    assert names(store, TraceFilter(user_id="alice", status="error")) == {0, 4}


@pytest.mark.parametrize("order", ["start_ns", "duration", "cost", "tokens"])
@pytest.mark.parametrize("descending", [True, False])
def test_cursor_pagination_has_no_gaps_or_duplicates(
    seeded: tuple[Store, list[str]], order: str, descending: bool
) -> None:
    store, ids = seeded
    everything = store.list_traces(limit=100, order=order, descending=descending).items
    seen, cursor = [], None
    while True:
        page = store.list_traces(limit=5, cursor=cursor, order=order, descending=descending)
        seen += [t.trace_id for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [t.trace_id for t in everything]
    assert sorted(seen) == sorted(ids)
    if order == "cost":  # unpriced sorts as the smallest
        assert everything[-1 if descending else 0].cost_usd is None


def test_bad_cursor_and_order(seeded: tuple[Store, list[str]]) -> None:
    store, _ = seeded
    cursor = store.list_traces(limit=2).next_cursor
    with pytest.raises(ValueError):
        store.list_traces(cursor=cursor, order="cost")
    with pytest.raises(ValueError):
        store.list_traces(cursor="garbage")
    with pytest.raises(ValueError):
        store.list_traces(order="nonsense")


def test_get_trace_by_short_id(seeded: tuple[Store, list[str]]) -> None:
    store, ids = seeded
    detail = store.get_trace(ids[1][-8:])  # the end, as short_id shows it
    assert detail is not None and detail.trace.trace_id == ids[1]
    by_start = store.get_trace(ids[1][:-1])
    assert by_start is not None and by_start.trace.trace_id == ids[1]
    # Time-ordered ids made within one millisecond share their first 12 digits.
    assert store.get_trace(ids[1][:4]) is None
    assert [s.kind for s in detail.spans] == ["chain", "retriever", "agent", "llm"]
    assert [s.value for s in detail.scores] == [1.0, 0.0]
    assert detail.trace.score_summary == {
        "helpful": {"value": 0.5, "count": 2, "passed": 1, "failed": 1}
    }
    assert [s.value for s in detail.samples] == [10.0]
    assert store.get_trace("") is None and store.get_trace("zzzz") is None
    page = store.list_traces(TraceFilter(user_id="alice", name="rag"), limit=100)
    assert {t.trace_id: t.score_summary for t in page.items}[ids[1]]["helpful"]["count"] == 2


def test_find_span_ids_in_any_trace(seeded: tuple[Store, list[str]]) -> None:
    store, ids = seeded
    detail = store.get_trace(ids[5])
    assert detail is not None
    span = detail.spans[-1]
    expected = [(ids[5], span.span_id)]
    assert store.find_span_ids(span.span_id) == expected
    assert store.find_span_ids(span.span_id[-10:]) == expected  # its end, as the CLI shows it
    assert store.find_span_ids(span.span_id[:-1]) == expected
    assert store.find_span_ids("") == [] and store.find_span_ids("zzzz") == []
    assert store.find_span_ids("%") == []  # LIKE's wildcards are literal
    assert len(store.find_span_ids(span.span_id[:2], limit=3)) == 3  # ambiguous: several


def test_find_span_ids_ignores_case_on_every_backend(seeded: tuple[Store, list[str]]) -> None:
    """Ids are lower-case hex; LIKE ignores case on SQLite but not on PostgreSQL."""
    store, ids = seeded
    detail = store.get_trace(ids[3])
    assert detail is not None
    span = detail.spans[-1]
    expected = [(ids[3], span.span_id)]
    assert store.find_span_ids(span.span_id.upper()) == expected
    assert store.find_span_ids(span.span_id[-10:].upper()) == expected
    assert store.find_span_ids(span.span_id[:-1].upper()) == expected


def test_aggregates_by_model_against_hand_computation(seeded: tuple[Store, list[str]]) -> None:
    store, _ = seeded
    rows = {r.group: r for r in store.aggregates(group_by="model")}
    assert set(rows) == {"gpt-4o", "claude-3"}
    claude = rows["claude-3"]  # traces 0, 3, 6, 9: LLM spans 70 ms, ttft 20 ms, tpot 5 ms
    assert (claude.count, claude.error_count, claude.unpriced_count) == (4, 0, 1)
    # From the rollups: percentiles within 2%.
    assert claude.latency_p50 == pytest.approx(0.070, rel=0.02)
    assert claude.ttft_p95 == pytest.approx(0.020, rel=0.02) and claude.tpot_p50 == pytest.approx(0.005, rel=0.02)
    assert claude.cost_usd == pytest.approx(0.018)
    assert (claude.input_tokens, claude.output_tokens) == (400, 44)


@pytest.mark.parametrize("from_spans", [True, False], ids=["trace rows", "rollups"])
def test_aggregates_over_traces_against_hand_computation(seeded: tuple[Store, list[str]],
                                                         from_spans: bool) -> None:
    store, _ = seeded
    (row,) = store.aggregates(since_ns=T0, until_ns=T0 + 12 * S, from_spans=from_spans)
    durations = sorted((100 + 100 * i) / 1000 for i in range(12))
    assert row.group is None and row.count == 12 and row.error_count == 3
    assert row.error_rate == pytest.approx(0.25)
    rel = 1e-6 if from_spans else 0.02  # the rollups' histograms: within 2%
    # linear interpolation: p95 rank = 0.95 * 11 = 10.45
    assert row.latency_p95 == pytest.approx(durations[10] + 0.45 * (durations[11] - durations[10]), rel=rel)
    assert row.latency_p50 == pytest.approx(0.65, rel=rel)
    assert row.latency_p99 == pytest.approx(percentile(durations, 0.99), rel=rel)
    assert row.cost_usd == pytest.approx(0.066) and row.unpriced_count == 1
    by_user = {r.group: r.count for r in store.aggregates(group_by="user")}
    assert by_user == {"alice": 6, "bob": 6}
    (empty,) = store.aggregates(since_ns=0, until_ns=1)
    assert empty.count == 0 and empty.latency_p50 is None and empty.cost_usd is None


def test_timeseries(seeded: tuple[Store, list[str]]) -> None:
    store, _ = seeded
    points = store.timeseries("requests", T0, T0 + 12 * S, buckets=4)
    assert [p.value for p in points] == [3, 3, 3, 3]
    errors = store.timeseries("errors", T0, T0 + 12 * S, buckets=4)
    assert [p.value for p in errors] == [1, 1, 1, 0]
    p95 = store.timeseries("latency_p95", T0, T0 + 16 * S, buckets=4)
    assert p95[-1].value is None and p95[0].value == pytest.approx(0.385, rel=0.02)  # rollups
    by_model = store.timeseries("cost", T0, T0 + 12 * S, buckets=2, group_by="model")
    assert {p.group for p in by_model} == {"gpt-4o", "claude-3"} and len(by_model) == 4
    with pytest.raises(ValueError):
        store.timeseries("bogus", T0, T0 + S, buckets=1)


def test_list_scores_alerts_samples(seeded: tuple[Store, list[str]]) -> None:
    store, ids = seeded
    assert len(store.list_scores(trace_id=ids[1])) == 2
    assert store.list_scores(name="other") == []
    assert [s.value for s in store.list_samples(name="gpu_util")] == [10.0, 99.0]
    assert [s.value for s in store.list_samples(since_ns=T0 + 50 * S)] == [99.0]
    assert store.list_alerts() == []


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
