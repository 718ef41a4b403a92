"""The two ways of keeping trace rows (summarised from a new batch in Python,
recomputed from the spans table in SQL) must give the same rows."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from chainsight.framework.model import Span
from chainsight.storage import schema, trace_summary
from chainsight.storage.engine import open_engine
from chainsight.storage.trace_summary import TRACE_COLUMNS, refresh_trace_totals
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
MODELS = ("gpt-4o-mini", "claude-3-haiku", None)


def random_trace(rng: random.Random, trace_no: int) -> list[Span]:
    """A trace of 1-8 spans with every field the summary reads varied: roots
    present or missing (or two), failed children, LLM calls with and without
    streaming, usage, cost, model, users and sessions on some spans."""
    t = T0 + trace_no * 10_000_000
    root = Span(f"chain-{trace_no}", "chain", start_ns=t + rng.randrange(0, 50))
    spans = [root]
    for i in range(rng.randrange(0, 8)):
        kind = rng.choice(("llm", "llm", "tool", "retriever", "chain"))
        # Equal starts happen (coarse clocks); the tie goes to the lower span id.
        span = Span(f"{kind}-{i}", kind, trace_id=root.trace_id, parent_id=root.span_id,
                    start_ns=t + rng.choice((100, 100, 200 + i * 10)))
        if kind == "llm":
            span.model = rng.choice(MODELS)
            if rng.random() < 0.7:
                span.input_tokens = rng.randrange(0, 500)
            if rng.random() < 0.7:
                span.output_tokens = rng.randrange(0, 50)
            if rng.random() < 0.6:
                span.cost_usd = rng.random() / 1000
            if rng.random() < 0.6:
                span.first_token_ns = span.start_ns + rng.randrange(1, 10**6)
        if rng.random() < 0.8:
            span.end_ns = span.start_ns + rng.randrange(1, 10**7)
        span.status = rng.choice(("ok", "ok", "error", "unset"))
        if rng.random() < 0.2:
            span.user_id = rng.choice(("ann", "bob"))
        if rng.random() < 0.2:
            span.session_id = rng.choice(("s1", "s2"))
        spans.append(span)
    root.status = rng.choice(("ok", "error"))
    root.end_ns = root.start_ns + 10**8 if rng.random() < 0.9 else None
    if rng.random() < 0.5:
        root.user_id, root.session_id = "carol", "s9"
    if rng.random() < 0.5:
        root.tags = ["prod", "rag"]
    root.outputs = {"answer": f"trace {trace_no}"}
    shape = rng.random()
    if shape < 0.15:
        spans.remove(root)  # root not arrived yet (or never will)
        for span in spans:
            span.parent_id = "f" * 16
    elif shape < 0.2:
        second = Span("second-root", "chain", trace_id=root.trace_id, start_ns=t + 5)
        second.status, second.user_id = "ok", "zed"
        spans.append(second)
    return spans


def no_recompute(conn: sa.Connection, trace_ids: object) -> None:
    raise AssertionError("no trace should be recomputed from the spans table here")


def trace_rows(url: str) -> dict[str, dict[str, object]]:
    engine = open_engine(url)
    with engine.connect() as conn:
        rows = {r.trace_id: dict(r._mapping) for r in conn.execute(sa.select(schema.traces))}
    engine.dispose()
    for row in rows.values():
        row.pop("updated_ns")
    return rows


def test_summary_of_new_traces_equals_the_recomputation(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    spans = [span for n in range(300) for span in random_trace(rng, n)]
    writer = StoreWriter(store_url)

    with monkeypatch.context() as patch:
        patch.setattr(trace_summary, "refresh_trace_totals", no_recompute)
        writer.write(WriteBatch(spans=spans))  # summarised in Python
    summarised = trace_rows(store_url)

    engine = open_engine(store_url)
    with engine.begin() as conn:
        refresh_trace_totals(conn, summarised)
    engine.dispose()
    recomputed = trace_rows(store_url)
    writer.close()

    assert len(summarised) == len({s.trace_id for s in spans}) > 250
    for trace_id, want in recomputed.items():
        got = summarised[trace_id]
        for column in TRACE_COLUMNS:
            if column == "updated_ns":
                continue
            if isinstance(want[column], float):
                assert got[column] == pytest.approx(want[column], rel=1e-12), (trace_id, column)
            else:
                assert got[column] == want[column], (trace_id, column, got, want)


@pytest.mark.parametrize(("parts", "root_last"), [(2, True), (3, True), (5, True), (3, False)])
def test_a_trace_split_over_batches_and_a_replayed_batch_stay_exact(
    store_url: str, parts: int, root_last: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    traces = [random_trace(rng, n) for n in range(40)]
    if root_last:  # a second root dealt into a later batch would arrive first
        traces = [t for t in traces if sum(s.parent_id is None for s in t) <= 1]
    one_batch = StoreWriter(store_url)
    one_batch.write(WriteBatch(spans=[s for t in traces for s in t]))
    want = trace_rows(store_url)
    one_batch.close()

    engine = open_engine(store_url)
    with engine.begin() as conn:
        conn.execute(schema.spans.delete())
        conn.execute(schema.traces.delete())
    engine.dispose()
    split = StoreWriter(store_url)
    # Each trace's spans dealt over ``parts`` batches (its root, at index 0,
    # in the first). Written last first, every later batch merges into rows
    # without a root and nothing is recomputed; written in order, spans come
    # after their root and those traces are recomputed. Then a replay (all
    # duplicates), which recomputes.
    deals = [[s for t in traces for s in t[i::parts]] for i in range(parts)]
    with monkeypatch.context() as patch:
        if root_last:
            patch.setattr(trace_summary, "refresh_trace_totals", no_recompute)
        for batch in reversed(deals) if root_last else deals:
            split.write(WriteBatch(spans=batch))
    split.write(WriteBatch(spans=deals[0] + deals[-1][:5]))
    split.close()
    got = trace_rows(store_url)
    assert got.keys() == want.keys()
    for trace_id, row in want.items():
        for column, value in row.items():
            if isinstance(value, float):
                assert got[trace_id][column] == pytest.approx(value, rel=1e-12), (trace_id, column)
            else:
                assert got[trace_id][column] == value, (trace_id, column)
