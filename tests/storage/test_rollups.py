"""The per-minute rollups answer what a scan of every span answers: counts and
sums exactly, percentiles within 2%, whatever order the spans arrive in, and
counting only what was stored (replays, split batches, rows refused)."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa

from chainsight.framework.model import Score, Span
from chainsight.storage import rollups, schema
from chainsight.storage.engine import open_engine
from chainsight.storage.query import METRICS, AggregateRow, Store
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000 + 17 * 10**9  # not on a minute
MS = 1_000_000
MINUTE = 60 * 10**9
PERCENTILES = ("latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95", "tpot_p50",
               "tpot_p95")


def llm_spans(n: int, seed: int, *, minutes: int = 30) -> list[Span]:
    """LLM calls (and a chain span each) spread over ``minutes``, with errors,
    unpriced calls, missing models and streamed and unstreamed calls."""
    rng = random.Random(seed)
    spans: list[Span] = []
    for _ in range(n):
        start = T0 + rng.randrange(minutes * MINUTE)
        root = Span("run", "chain", start_ns=start)
        root.end_ns, root.status = start + rng.randint(1, 9000) * MS, "ok"
        llm = Span("call", "llm", trace_id=root.trace_id, parent_id=root.span_id, start_ns=start + MS)
        llm.model = rng.choice(["gpt-4o", "claude-3", "llama", None])
        llm.provider = {"gpt-4o": "openai", "claude-3": "anthropic"}.get(llm.model or "")
        llm.end_ns = llm.start_ns + int(rng.lognormvariate(6, 1.2) * MS)
        if rng.random() < 0.7:
            llm.first_token_ns = llm.start_ns + int((llm.end_ns - llm.start_ns) * rng.random())
        llm.input_tokens = rng.randint(1, 2000)
        llm.output_tokens = rng.choice([None, 1, rng.randint(2, 900)])
        llm.cost_usd = None if rng.random() < 0.2 else rng.random() / 100
        llm.status = "error" if rng.random() < 0.1 else "ok"
        root.end_ns = max(root.end_ns, llm.end_ns)  # a trace lasts as long as its root
        spans += [root, llm]
    return spans


def verdicts(spans: list[Span], seed: int) -> list[Score]:
    """Check verdicts on the model calls: passing ones (stored on the span),
    with and without a value, and failing ones (score rows)."""
    rng = random.Random(seed)
    out = []
    for span in spans:
        if span.kind != "llm":
            continue
        for name in ("length", "toxicity", "pii"):
            value = rng.random() if name == "toxicity" else None
            out.append(Score(name, "check", span.trace_id, span.span_id, value,
                             passed=rng.random() > 0.05, created_ns=span.end_ns))
    return out


def same(got: AggregateRow, want: AggregateRow, where: str) -> None:
    for name in ("group", "count", "error_count", "input_tokens", "output_tokens", "unpriced_count"):
        assert getattr(got, name) == getattr(want, name), f"{where}: {name}"
    assert got.error_rate == pytest.approx(want.error_rate, rel=1e-12), where
    if want.cost_usd is None:
        assert got.cost_usd is None, where
    else:
        assert got.cost_usd == pytest.approx(want.cost_usd, rel=1e-9), where
    for name in PERCENTILES:
        g, w = getattr(got, name), getattr(want, name)
        if w is None:
            assert g is None, f"{where}: {name}"
        else:
            assert g == pytest.approx(w, rel=0.02), f"{where}: {name}"


def assert_rollups_answer_as_spans(url: str) -> None:
    """Every grouping, windows on and off minute edges, and time series whose
    buckets are whole minutes."""
    windows: list[tuple[int | None, int | None]] = [
        (None, None), (T0, T0 + 30 * MINUTE), (T0 + 7 * 10**9, T0 + 11 * MINUTE + 3 * 10**9),
        (T0 + 3 * MINUTE, None), (None, T0 + 5 * MINUTE + 1), (T0 + 10**9, T0 + 40 * 10**9),
    ]
    with Store(url) as store:
        for since, until in windows:
            for group_by in ("model", "provider", "kind"):
                got = store.aggregates(since, until, group_by=group_by)
                want = store.aggregates(since, until, group_by=group_by, from_spans=True)
                assert [r.group for r in got] == [r.group for r in want], (since, until, group_by)
                for g, w in zip(got, want, strict=True):
                    same(g, w, f"{since}-{until} by {group_by} {w.group}")
            # whole traces: counts and sums exactly, percentiles within 2%
            (got_row,) = store.aggregates(since, until)
            (want_row,) = store.aggregates(since, until, from_spans=True)
            same(got_row, want_row, f"{since}-{until} traces")
            got_stats = store.score_stats(since, until)
            want_stats = store.score_stats(since, until, from_spans=True)
            assert [dataclasses.replace(st, value_sum=None) for st in got_stats] == \
                [dataclasses.replace(st, value_sum=None) for st in want_stats]
            assert [st.value_sum for st in got_stats] == pytest.approx([st.value_sum for st in want_stats])
        # buckets of whole minutes from a minute's start: the same buckets exactly
        since = T0 - T0 % MINUTE
        for group_by in ("model", None):
            got_series = store.series(METRICS, since, since + 30 * MINUTE, 10, group_by=group_by)
            want_series = store.series(METRICS, since, since + 30 * MINUTE, 10, group_by=group_by,
                                       from_spans=True)
            for metric in METRICS:
                for g, w in zip(got_series[metric], want_series[metric], strict=True):
                    assert (g.group, g.start_ns) == (w.group, w.start_ns)
                    if w.value is None:
                        assert g.value is None, (metric, w)
                    else:
                        assert g.value == pytest.approx(w.value, rel=0.02 if "_p" in metric else 1e-9), \
                            (metric, w)


def test_rollups_answer_as_the_span_scan(store_url: str) -> None:
    spans = llm_spans(1500, seed=1)
    scores = verdicts(spans, seed=1)
    writer = StoreWriter(store_url)
    for i in range(0, len(spans), 256):  # batches as the pipeline writes them
        ids = {s.span_id for s in spans[i : i + 256]}
        writer.write(WriteBatch(spans=spans[i : i + 256], scores=[v for v in scores if v.span_id in ids]))
    writer.close()
    with Store(store_url) as store:
        stats = {(st.source, st.name): st for st in store.score_stats()}
    # the passing verdicts were counted from the rollups, the failing ones from their rows
    assert stats[("check", "toxicity")].count == len(scores) // 3
    assert stats[("check", "pii")].passed == sum(1 for v in scores if v.name == "pii" and v.passed)
    assert_rollups_answer_as_spans(store_url)


def test_a_whole_trace_is_its_root_however_its_spans_arrive(store_url: str) -> None:
    """The root, its model call and their usage arrive in different batches,
    the root last; the traces' figures count each trace once, at its root."""
    spans = llm_spans(300, seed=5, minutes=10)
    llms, roots = [s for s in spans if s.kind == "llm"], [s for s in spans if s.kind != "llm"]
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=llms[:150]))
    writer.write(WriteBatch(spans=roots[:100] + llms[150:]))
    writer.write(WriteBatch(spans=roots[100:]))
    writer.close()
    with Store(store_url) as store:
        (row,) = store.aggregates()
    assert row.count == 300 and row.error_count == 0  # roots: all "ok"; the failed calls were handled
    assert row.input_tokens == sum(s.input_tokens or 0 for s in llms)
    assert_rollups_answer_as_spans(store_url)


def test_windows_of_days_read_days_hours_minutes_and_spans(store_url: str) -> None:
    spans = llm_spans(3000, seed=7, minutes=3 * 1440)
    StoreWriter(store_url).write(WriteBatch(spans=spans))
    assert_rollups_answer_as_spans(store_url)
    hour = 60 * MINUTE
    since = T0 - T0 % hour + hour
    with Store(store_url) as store:
        for args in ((T0 + 7 * 10**9, T0 + 4 * hour + 3 * MINUTE + 5 * 10**9), (since + 10**9, since + 2 * hour),
                     (T0 + 7 * 10**9, T0 + 53 * hour + 3 * MINUTE + 5 * 10**9), (since, since + 48 * hour)):
            for group_by in ("model", "kind"):
                got = store.aggregates(*args, group_by=group_by)
                want = store.aggregates(*args, group_by=group_by, from_spans=True)
                for g, w in zip(got, want, strict=True):
                    same(g, w, f"{args} by {group_by}")
        for metric in ("requests", "cost", "latency_p95"):  # buckets of whole hours
            got_points = store.timeseries(metric, since, since + 3 * hour, 3, group_by="model")
            want_points = store.timeseries(metric, since, since + 3 * hour, 3, group_by="model",
                                           from_spans=True)
            for g, w in zip(got_points, want_points, strict=True):
                assert g.group == w.group and g.value == pytest.approx(w.value, rel=0.02), (metric, w)


def test_late_and_out_of_order_spans_are_counted_once(store_url: str) -> None:
    """Spans of old minutes arriving after newer ones, in reverse order, and
    a batch replayed (a spill file read again) with new spans in it."""
    spans = llm_spans(600, seed=2)
    spans.sort(key=lambda s: -s.start_ns)
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=spans[:300]))
    writer.write(WriteBatch(spans=spans[600:]))  # the oldest minutes first
    late = writer.prepare(WriteBatch(spans=spans[300:700]))
    writer.write_prepared(late)
    writer.write_prepared(writer.prepare(WriteBatch(spans=spans[200:800])))  # half of it stored already
    writer.write_prepared(late)  # all of it stored already
    writer.close()
    with Store(store_url) as store:
        (row,) = store.aggregates(group_by="kind")
    assert row.count == sum(1 for s in spans if s.kind == "llm")
    assert_rollups_answer_as_spans(store_url)


def poison(url: str) -> None:
    """Make the store refuse any span named 'poison', for its own reasons."""
    engine = open_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                "IF NEW.name = 'poison' THEN RAISE EXCEPTION 'this store refuses poison'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON spans FOR EACH ROW "
                                 "EXECUTE FUNCTION refuse_poison()")
        else:
            conn.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON spans WHEN NEW.name = 'poison' "
                                 "BEGIN SELECT RAISE(ABORT, 'this store refuses poison'); END")
    engine.dispose()


def test_a_split_batch_counts_only_what_was_stored(store_url: str) -> None:
    spans = llm_spans(200, seed=3, minutes=3)
    bad = [s for s in spans if s.kind == "llm"][::37]
    for span in bad:
        span.name = "poison"
    writer = StoreWriter(store_url)
    writer.open()
    poison(store_url)
    rejected = writer.write_isolating(writer.prepare(WriteBatch(spans=spans)))
    writer.close()
    assert sorted(r.row["span_id"] for r in rejected) == sorted(s.span_id for s in bad)
    with Store(store_url) as store:
        (row,) = store.aggregates(group_by="kind")
    assert row.count == 200 - len(bad)
    assert_rollups_answer_as_spans(store_url)


def test_rebuild_gives_the_rollups_the_writer_kept(store_url: str) -> None:
    spans = llm_spans(400, seed=4, minutes=150)
    writer = StoreWriter(store_url)
    for i in range(0, len(spans), 64):
        writer.write(WriteBatch(spans=spans[i : i + 64]))
    writer.close()
    engine = open_engine(store_url)
    R = schema.span_rollups
    key = [R.c[k] for k in rollups.KEY_COLUMNS]

    def table() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            rows = [dict(m) for m in conn.execute(sa.select(R).order_by(*key)).mappings()]
        for row in rows:
            for name in rollups.SPREADS:
                row[name] = json.loads(row[name])
        return rows

    kept = table()
    for period in (60, 3600, 86400):
        assert sum(r["count"] for r in kept if r["period_s"] == period) == len(spans)
    cut = T0 - T0 % (60 * MINUTE) + 60 * MINUTE  # on an hour
    with engine.begin() as conn:  # spans deleted (a prune): the rollups still count them
        conn.execute(sa.delete(schema.spans).where(schema.spans.c.start_ns < cut))
        conn.execute(sa.delete(schema.traces).where(schema.traces.c.start_ns < cut))
        conn.execute(sa.delete(R))
    engine.dispose()
    cli = [sys.executable, "-m", "chainsight.framework.cli", "db", "rebuild-rollups", "--db", store_url,
           "--json"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=True)
    left = [s for s in spans if s.start_ns >= cut]
    assert json.loads(done.stdout)["spans"] == len(left)
    engine = open_engine(store_url)
    rebuilt = table()
    engine.dispose()
    for period in (60, 3600, 86400):
        assert sum(r["count"] for r in rebuilt if r["period_s"] == period) == len(left)
    # the minutes and hours after the cut as they were (a day holds spans on both sides)
    rebuilt = [r for r in rebuilt if r["period_s"] < 86400]
    want = [r for r in kept if r["start_ns"] >= cut and r["period_s"] < 86400]
    assert [r["cost_usd"] for r in rebuilt] == pytest.approx([r["cost_usd"] for r in want], rel=1e-9)
    for r in (*rebuilt, *want):
        del r["cost_usd"]
    assert rebuilt == want
    assert_rollups_answer_as_spans(store_url)


def test_histogram_buckets_hold_values_within_two_percent() -> None:
    rng = random.Random(6)
    for _ in range(20_000):
        ms = 10 ** rng.uniform(-4, 7)
        assert abs(rollups.value_of(rollups.bucket_of(ms)) - ms) <= 0.0197 * ms
    assert rollups.value_of(rollups.bucket_of(0.0)) == 0.0
    assert rollups.hist_percentile({}, 0.5) is None


def test_a_span_another_writer_stores_meanwhile_is_counted_once(store_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch holding a stored span is written again one span at a time;
    another writer stores one of its spans in between (uncommitted when the
    second try begins, committed while it waits). Reading the stored ids
    first and then inserting counted that span twice."""
    import threading
    import time

    x, y = llm_spans(1, seed=9)  # a chain span and its model call
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=[y]))
    x_row = writer.prepare(WriteBatch(spans=[x]))["spans"][0]
    other = open_engine(store_url)
    inserted = threading.Event()

    def other_writer() -> None:
        with other.begin() as conn:
            conn.execute(sa.insert(schema.spans).values(
                {c: x_row[c] for c in ("span_id", "trace_id", "kind", "name", "status", "start_ns", "end_ns",
                                   "tokens_estimated", "chunk_count")}))
            rollups.write(conn, [x_row])
            inserted.set()
            time.sleep(0.5)  # the batch's second try waits on this row meanwhile

    threads: list[threading.Thread] = []
    first_try = StoreWriter._transaction

    def second_try_after_the_other_insert(self: StoreWriter, engine: Any, rows: Any, *, sort_out: bool) -> None:
        if sort_out and not threads:  # the first try found y stored and was rolled back
            threads.append(threading.Thread(target=other_writer))
            threads[0].start()
            assert inserted.wait(10)
        first_try(self, engine, rows, sort_out=sort_out)

    monkeypatch.setattr(StoreWriter, "_transaction", second_try_after_the_other_insert)
    try:
        writer.write(WriteBatch(spans=[x, y]))
    finally:
        for thread in threads:
            thread.join(10)
        writer.close()
        other.dispose()
    assert threads, "the batch was not written twice"
    with Store(store_url) as store:
        (row,) = store.aggregates(group_by=None)
        by_kind = {r.group: r.count for r in store.aggregates(group_by="kind")}
    assert row.count == 1 and by_kind == {"llm": 1}  # x once (the root), y once
    engine = open_engine(store_url)
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT period_s, sum(count) FROM span_rollups GROUP BY period_s")).all())
    engine.dispose()
    assert {int(k): int(v) for k, v in counts.items()} == {60: 2, 3600: 2, 86400: 2}
