"""Retention: prune deletes exactly the old traces with their spans, scores and
samples, in batches, while another thread keeps writing (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from storage_builders import three_level_trace

from chainsight.framework.model import Sample, Score, Span
from chainsight.storage import schema
from chainsight.storage.engine import open_engine, upgrade
from chainsight.storage.retention import auto_vacuum_mode, prune, vacuum
from chainsight.storage.writer import StoreWriter, WriteBatch

DAY = 86_400 * 1_000_000_000
NOW = time.time_ns()
CUTOFF = NOW - 30 * DAY


def _batch(t0: int, count: int, step: int = 1_000_000_000) -> tuple[list[Span], list[Score]]:
    spans: list[Span] = []
    scores: list[Score] = []
    for i in range(count):
        trace = three_level_trace(t0 + i * step)
        spans += trace
        # a failed verdict: a score row (a passing one is stored on its span, and goes with it)
        scores += [Score("refusal", "check", trace[0].trace_id, span_id=trace[3].span_id, value=1.0,
                         passed=False),
                   Score("thumbs", "feedback", trace[0].trace_id, value=1.0)]
    return spans, scores


def _ids(url: str, table: sa.Table, column: str) -> set[str]:
    engine = open_engine(url, create=False)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(table.c[column]))}
    finally:
        engine.dispose()


def test_prune_removes_exactly_the_old_traces_while_another_thread_writes(store_url: str) -> None:
    writer = StoreWriter(store_url)
    old_spans, old_scores = _batch(NOW - 40 * DAY, 120, step=60_000_000_000)
    keep_spans, keep_scores = _batch(NOW - 29 * DAY, 30)
    writer.write(WriteBatch(
        spans=old_spans + keep_spans, scores=old_scores + keep_scores,
        samples=[Sample("gpu_util", 1.0, time_ns=NOW - 31 * DAY),
                 Sample("gpu_util", 2.0, time_ns=NOW - 1 * DAY)]))
    old_traces = {s.trace_id for s in old_spans}

    written: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_writing() -> None:  # new traces, and late feedback on traces being kept
        other = StoreWriter(store_url)
        try:
            i = 0
            while not stop.is_set() or i < 5:
                spans, scores = _batch(NOW + i * 10_000_000_000, 2)
                other.write(WriteBatch(spans=spans, scores=scores))
                written.extend(s.trace_id for s in spans if s.parent_id is None)
                i += 1
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            other.close()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        dry = prune(store_url, CUTOFF, dry_run=True)
        assert (dry.traces, dry.spans, dry.scores, dry.samples) == (120, 480, 240, 1)
        seen: list[int] = []
        result = prune(store_url, CUTOFF, batch_size=7, progress=lambda r: seen.append(r.traces))
    finally:
        stop.set()
        thread.join(60)
    writer.close()
    assert not failures, failures
    assert len(written) >= 10
    assert (result.traces, result.spans, result.scores, result.samples) == (120, 480, 240, 1)
    assert result.batches >= 120 // 7 and seen[-1] == 120 and seen == sorted(seen)

    kept = {s.trace_id for s in keep_spans} | set(written)
    assert _ids(store_url, schema.traces, "trace_id") == kept
    span_traces = {s.trace_id for s in keep_spans}
    assert {t for t in _ids(store_url, schema.spans, "span_id")} >= {s.span_id for s in keep_spans}
    engine = open_engine(store_url, create=False)
    try:
        with engine.connect() as conn:
            left = {r[0] for r in conn.execute(sa.select(schema.spans.c.trace_id))}
            scored = {r[0] for r in conn.execute(sa.select(schema.scores.c.trace_id))}
            samples = [r[0] for r in conn.execute(sa.select(schema.samples.c.value))]
    finally:
        engine.dispose()
    assert not left & old_traces and not scored & old_traces
    assert span_traces <= left and left == kept and scored >= span_traces
    assert samples == [2.0]
    assert prune(store_url, CUTOFF).traces == 0  # nothing left to do


def test_sqlite_gives_the_space_back(sqlite_url: str) -> None:
    writer = StoreWriter(sqlite_url)
    spans, scores = _batch(NOW - 40 * DAY, 400)
    for span in spans:
        span.outputs = {"text": "x" * 2000}
    writer.write(WriteBatch(spans=spans, scores=scores))
    writer.close()
    engine = open_engine(sqlite_url, create=False)
    assert auto_vacuum_mode(engine) == 2  # a new store is made incremental
    with engine.connect() as conn:
        before = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    result = prune(sqlite_url, CUTOFF)
    with engine.connect() as conn:
        after = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
    engine.dispose()
    assert result.traces == 400 and result.pages_freed > 0
    assert after <= before - result.pages_freed and free == 0


def test_vacuum_makes_an_old_store_incremental(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = open_engine(sqlite_url, create=False)
    with engine.connect() as conn:  # as a store made before retention was
        conn.exec_driver_sql("PRAGMA auto_vacuum = NONE")
        conn.commit()
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
    assert auto_vacuum_mode(engine) == 0
    engine.dispose()
    vacuum(sqlite_url)
    engine = open_engine(sqlite_url, create=False)
    assert auto_vacuum_mode(engine) == 2
    engine.dispose()


def test_a_bad_batch_size_is_refused(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    with pytest.raises(ValueError, match="batch_size"):
        prune(sqlite_url, CUTOFF, batch_size=0)


def test_prune_keeps_the_metric_rollups(store_url: str) -> None:
    """Pruned spans leave the store; their per-minute rollups stay, so the
    metrics of an old window are still answered (the rollups' own, longer
    retention)."""
    from chainsight.storage.query import Store

    writer = StoreWriter(store_url)
    spans, scores = _batch(NOW - 40 * DAY, 10)
    writer.write(WriteBatch(spans=spans, scores=scores))
    writer.close()
    window = (NOW - 41 * DAY, NOW - 39 * DAY)
    with Store(store_url) as store:
        before = {(r.group, r.count) for r in store.aggregates(*window, group_by="kind")}
    assert before and prune(store_url, CUTOFF).spans == len(spans)
    with Store(store_url) as store:
        assert {(r.group, r.count) for r in store.aggregates(*window, group_by="kind")} == before
        assert store.aggregates(*window, group_by="kind", from_spans=True) == []
