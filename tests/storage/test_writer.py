from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from storage_builders import MS, three_level_trace

from chainsight.framework.model import Alert, Sample, Score
from chainsight.storage import schema
from chainsight.storage.engine import open_engine
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000


def table_count(url: str, table: sa.Table) -> int:
    engine = open_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return int(count)


def test_round_trip_of_a_three_level_trace(store_url: str) -> None:
    spans = three_level_trace(T0, cost=None)
    spans[1].cost_usd = 0.0  # priced at zero stays 0.0, unpriced stays None
    writer = StoreWriter(store_url)
    assert writer.write(WriteBatch(spans=spans)) == 4
    writer.close()

    with Store(store_url) as store:
        detail = store.get_trace(spans[0].trace_id)
    assert detail is not None
    got = {s.span_id: s for s in detail.spans}
    assert [s.span_id for s in detail.spans] == [s.span_id for s in spans]  # by start
    for want in spans:
        span = got[want.span_id]
        assert span.to_dict() == json.loads(json.dumps(want.to_dict()))
    llm = got[spans[3].span_id]
    assert llm.parent_id == spans[2].span_id and got[spans[2].span_id].parent_id == spans[0].span_id
    assert llm.cost_usd is None and got[spans[1].span_id].cost_usd == 0.0
    assert llm.ttft_s == pytest.approx(0.020) and llm.tpot_s == pytest.approx(0.005)

    trace = detail.trace
    assert (trace.name, trace.status, trace.start_ns, trace.end_ns) == ("rag", "ok", T0, T0 + 100 * MS)
    assert (trace.span_count, trace.llm_count, trace.error_count) == (4, 1, 0)
    assert (trace.input_tokens, trace.output_tokens) == (100, 11)
    assert trace.cost_usd == 0.0  # one span priced at 0, the LLM unpriced
    assert trace.ttft_s == pytest.approx(0.020)
    assert (trace.model, trace.user_id, trace.session_id, trace.tags) == ("gpt-4o", "alice", "s1", ("prod",))


def test_unpriced_trace_has_no_cost(store_url: str) -> None:
    spans = three_level_trace(T0, cost=None)
    StoreWriter(store_url).write(WriteBatch(spans=spans))
    detail = Store(store_url).get_trace(spans[0].trace_id)
    assert detail is not None and detail.trace.cost_usd is None


def test_replaying_a_prepared_batch_creates_no_duplicates(store_url: str) -> None:
    spans = three_level_trace(T0)
    score = Score("helpful", "check", spans[0].trace_id, value=1.0, passed=True)
    sample = Sample("gpu_util", 50.0, time_ns=T0 + 5 * MS, labels={"gpu": "0"})
    alert = Alert("latency", "firing", alert_id="a1", started_ns=T0)
    writer = StoreWriter(store_url)
    rows = writer.prepare(WriteBatch(spans=spans, scores=[score], samples=[sample], alerts=[alert]))
    rows = json.loads(json.dumps(rows))  # the spill-file format
    writer.write_prepared(rows)
    before = Store(store_url).get_trace(spans[0].trace_id)
    writer.write_prepared(rows)
    after = Store(store_url).get_trace(spans[0].trace_id)
    for table, n in ((schema.spans, 4), (schema.traces, 1), (schema.scores, 1),
                     (schema.samples, 1), (schema.alerts, 1)):
        assert table_count(store_url, table) == n, table.name
    assert before is not None and after is not None
    assert before.trace == after.trace
    assert after.samples == [sample] and after.scores == [score]


def test_totals_are_right_when_children_arrive_after_the_root(store_url: str) -> None:
    root, retr, step, llm = three_level_trace(T0)
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=[retr]))
    early = Store(store_url).get_trace(root.trace_id)
    assert early is not None and (early.trace.name, early.trace.status) == ("", "unset")
    writer.write(WriteBatch(spans=[root]))
    writer.write(WriteBatch(spans=[llm, step]))
    detail = Store(store_url).get_trace(root.trace_id)
    assert detail is not None
    t = detail.trace
    assert (t.name, t.status, t.span_count, t.llm_count) == ("rag", "ok", 4, 1)
    assert (t.input_tokens, t.output_tokens, t.cost_usd, t.model) == (100, 11, 0.002, "gpt-4o")
    assert (t.start_ns, t.end_ns) == (T0, T0 + 100 * MS)


def test_error_status_comes_from_the_root(store_url: str) -> None:
    failed = three_level_trace(T0, error=True)
    handled = three_level_trace(T0 + MS)
    handled[3].status, handled[3].error = "error", "rate limited, retried"
    StoreWriter(store_url).write(WriteBatch(spans=failed + handled))
    store = Store(store_url)
    a, b = store.get_trace(failed[0].trace_id), store.get_trace(handled[0].trace_id)
    assert a is not None and b is not None
    assert (a.trace.status, a.trace.error_count) == ("error", 1)
    assert (b.trace.status, b.trace.error_count) == ("ok", 1)


def test_alert_transitions_update_one_row(store_url: str) -> None:
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(alerts=[Alert("cost", "pending", alert_id="x", value=1.0, started_ns=T0)]))
    writer.write(WriteBatch(alerts=[Alert("cost", "firing", alert_id="x", value=2.0, started_ns=T0)]))
    resolved = Alert("cost", "resolved", alert_id="x", value=0.5, started_ns=T0, ended_ns=T0 + 1)
    writer.write(WriteBatch(alerts=[resolved]))
    # An older state replayed late does not reopen it.
    writer.write(WriteBatch(alerts=[Alert("cost", "firing", alert_id="x", value=2.0, started_ns=T0)]))
    alerts = Store(store_url).list_alerts()
    assert alerts == [resolved]


def test_content_is_capped(store_url: str) -> None:
    spans = three_level_trace(T0)
    spans[0].inputs = {"doc": "x" * 50_000}
    StoreWriter(store_url, max_content_bytes=1000).write(WriteBatch(spans=spans))
    detail = Store(store_url).get_trace(spans[0].trace_id)
    assert detail is not None
    stored = detail.spans[0].inputs
    assert stored["__truncated__"] is True and stored["original_bytes"] > 50_000


def test_plugin_health_is_upserted(store_url: str) -> None:
    from chainsight.framework.dispatch import PluginHealth

    writer = StoreWriter(store_url)
    writer.write_plugin_health([PluginHealth("pii", calls=3)])
    writer.write_plugin_health([PluginHealth("pii", calls=9, failures=9, consecutive=9,
                                              degraded=True, last_error="boom")])
    (row,) = Store(store_url).plugin_health()
    assert (row["name"], row["calls"], row["degraded"], row["last_error"]) == ("pii", 9, True, "boom")
