"""Issue 13, lean storage: passing check verdicts stored on their spans,
content stored once per trace, aggregates computed by the store; and every
reader gives the answers it gave when each score was a row and each span
held all its content."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from storage_builders import MS, assert_same, plain, three_level_trace

from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from chainsight.storage import schema, shared_content, verdicts
from chainsight.storage.quality import quality_by_model, quality_metrics, quality_over_time
from chainsight.storage.query import Store, TraceFilter, _summarise, percentile
from chainsight.storage.serialize import dumps
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000 * 10**9 // (3600 * 10**9) * (3600 * 10**9)
HOUR = 3600 * 10**9
CHECKS = [("refusal", "chainsight.plugins.refusal"), ("pii", "chainsight.plugins.pii"),
          ("toxicity", "chainsight.plugins.toxicity"), ("length", "chainsight.plugins.length")]


def fields(score: Score, *, keep_id: bool = True) -> dict[str, Any]:
    out = dataclasses.asdict(score)
    if not keep_id:
        out.pop("score_id")
    return out


def count(url: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with Store(url) as store, store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


# ---- check verdicts -----------------------------------------------------------------


def test_passing_checks_live_on_their_span_and_read_back_as_scores(store_url: str) -> None:
    root, _retr, _step, llm = spans = three_level_trace(T0)
    tid = root.trace_id

    def at(ms: int) -> int:
        return T0 + ms * MS

    compact = [
        Score("refusal", "check", tid, llm.span_id, 0.0, "answered", True, "no refusal pattern",
              created_ns=at(95)),
        Score("length", "check", tid, llm.span_id, 11.0, "ok", True, "11 chars", created_ns=at(97)),
        Score("toxicity", "check", tid, llm.span_id, 0.01, "clean", True, None, created_ns=at(99)),
    ]
    rows = [
        Score("pii", "check", tid, llm.span_id, 1.0, "email", False, "found email x1", created_ns=at(96)),
        Score("flagged", "check", tid, llm.span_id, 0.5, "unsure", None, "no verdict", created_ns=at(98)),
        Score("groundedness", "check", tid, None, 0.9, "grounded", True, "trace level", created_ns=at(101)),
        Score("groundedness", "judge", tid, root.span_id, 0.8, "grounded", True, "judged", created_ns=at(150)),
        Score("exact_match", "eval", tid, root.span_id, 1.0, None, True, experiment_id="e1", created_ns=at(160)),
        Score("thumbs", "feedback", tid, None, 1.0, created_ns=at(170)),
        Score("late", "check", tid, "a-span-of-another-batch", 1.0, None, True, created_ns=at(180)),
    ]
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=spans, scores=rows[:3] + compact + rows[3:]))
    writer.close()

    assert count(store_url, schema.scores) == len(rows)
    want = sorted(compact + rows, key=lambda s: s.created_ns)
    with Store(store_url) as store:
        detail = store.get_trace(tid)
        assert detail is not None
        got = detail.scores
        assert [fields(s, keep_id=False) for s in got] == [fields(s, keep_id=False) for s in want]
        by_id = {s.score_id for s in got}
        assert {s.score_id for s in rows} <= by_id
        assert {f"{llm.span_id}:{i}" for i in range(3)} <= by_id
        listed = store.list_scores(trace_id=tid)
        assert [s.score_id for s in listed] == [s.score_id for s in reversed(got)]
        assert [s.score_id for s in store.list_scores(name="refusal")] == [f"{llm.span_id}:0"]
        assert [s.name for s in store.list_scores(source="feedback")] == ["thumbs"]
        assert [s.name for s in store.list_scores(trace_id=tid, since_ns=at(97))] == \
            ["late", "thumbs", "exact_match", "groundedness", "groundedness", "toxicity", "flagged", "length"]
        (trace,) = store.list_traces().items
        assert trace.score_summary == _summarise(want)[tid]


def test_odd_passing_checks_stay_rows(sqlite_url: str) -> None:
    """A verdict the compact form cannot hold exactly is a row, checked as rows are."""
    spans = three_level_trace(T0)
    llm = spans[3]
    odd = [Score("nan", "check", llm.trace_id, llm.span_id, math.nan, None, True),
           Score(123, "check", llm.trace_id, llm.span_id, 1.0, None, True),  # type: ignore[arg-type]
           Score("other trace", "check", "another-trace", llm.span_id, 1.0, None, True)]
    StoreWriter(sqlite_url).write(WriteBatch(spans=spans, scores=odd))
    assert count(sqlite_url, schema.scores) == 3
    assert count(sqlite_url, schema.spans, schema.spans.c.checks.is_not(None)) == 0


# ---- content once -------------------------------------------------------------------


def chain_run(url: str, tmp_path: Path) -> str:
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from chainsight.framework.adapters.langchain import CallbackHandler

    prompt = ChatPromptTemplate.from_messages([("system", "You answer questions about {topic} "
                                                "in one short sentence, politely."),
                                               ("human", "{question}")])
    chain = prompt | FakeListChatModel(responses=["The answer is forty-two, as it always was."]) \
        | StrOutputParser()
    obs = Observer(url, builtins=CHECKS, entry_points=False, strict=True, spill_path=tmp_path / "spill")
    try:
        chain.invoke({"topic": "numbers", "question": "What is the answer to everything?"},
                     config={"callbacks": [CallbackHandler(obs)]})
        assert obs.flush(10)
    finally:
        obs.shutdown()
    with Store(url) as store:
        (trace,) = store.list_traces(TraceFilter(name="RunnableSequence")).items
    return trace.trace_id


def test_prompt_and_parser_content_is_stored_once(store_url: str, tmp_path: Path) -> None:
    trace_id = chain_run(store_url, tmp_path)
    s = schema.spans
    with Store(store_url) as store:
        with store.engine.connect() as conn:
            stored = {r.kind: r for r in conn.execute(sa.select(s.c.kind, s.c.span_id, s.c.inputs,
                                                                s.c.content_refs))}
        detail = store.get_trace(trace_id)
    assert detail is not None
    spans = {span.kind: span for span in detail.spans}
    prompt, llm, parser = stored["prompt"], stored["llm"], stored["parser"]
    # The model's input is the prompt's output messages; the parser's input the model's answer.
    assert llm.inputs is None and llm.content_refs == f"iO{prompt.span_id}"
    assert parser.inputs is None and parser.content_refs == f"io{llm.span_id}"
    assert spans["llm"].inputs == spans["prompt"].outputs["messages"]
    assert spans["parser"].inputs == spans["llm"].outputs
    assert spans["llm"].inputs[1]["content"] == "What is the answer to everything?"
    # and the verdicts of the model call ride on its span
    assert {sc.name for sc in detail.scores if sc.span_id == llm.span_id} >= {"refusal", "pii", "toxicity"}


def test_a_row_split_off_its_batch_keeps_its_content(sqlite_url: str) -> None:
    """A batch the store refuses is split: each row then carries its own
    content, so the rows stored and the row dead-lettered lose nothing."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "reliability"))
    from reliability_helpers import poison

    messages = {"messages": [{"role": "user", "content": "a question long enough to be stored once " * 2}]}
    holder = Span("poison", "prompt", start_ns=T0)
    holder.outputs, holder.end_ns = messages, T0 + 1
    user = Span("model", "llm", trace_id=holder.trace_id, parent_id=holder.span_id, start_ns=T0 + 1)
    user.inputs, user.end_ns = messages["messages"], T0 + 2
    writer = StoreWriter(sqlite_url)
    writer.open()
    poison(sqlite_url)
    rows = writer.prepare(WriteBatch(spans=[holder, user]))
    assert rows["spans"][1]["content_refs"] == f"iO{holder.span_id}"
    (rejected,) = writer.write_isolating(rows)
    writer.close()
    assert rejected.row["span_id"] == holder.span_id and json.loads(rejected.row["outputs"]) == messages
    with Store(sqlite_url) as store:
        detail = store.get_trace(holder.trace_id)
    assert detail is not None
    (stored,) = detail.spans
    assert stored.inputs == messages["messages"]


def test_a_reference_to_a_lost_span_says_so(sqlite_url: str) -> None:
    answer = {"content": "an answer long enough to be worth storing only once, really"}
    llm = Span("model", "llm", start_ns=T0)
    llm.outputs, llm.end_ns = answer, T0 + 1
    parser = Span("parser", "parser", trace_id=llm.trace_id, start_ns=T0 + 2)
    parser.inputs, parser.end_ns = answer, T0 + 3
    StoreWriter(sqlite_url).write(WriteBatch(spans=[llm, parser]))
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    conn.execute("DELETE FROM spans WHERE span_id = ?", (llm.span_id,))
    conn.commit()
    conn.close()
    with Store(sqlite_url) as store:
        detail = store.get_trace(llm.trace_id)
    assert detail is not None
    (kept,) = detail.spans
    assert kept.inputs == {"__missing__": f"stored once with span {llm.span_id}, which is not in the store"}


# ---- rows in the old form --------------------------------------------------------------------


def test_rows_prepared_before_the_upgrade_are_stored(store_url: str) -> None:
    """A spill file written by the previous version (span rows with
    latency_ms, tags_text and search_text, passing checks as score rows) is
    replayed into an upgraded store and reads as it should."""
    root = {
        "span_id": "r1", "trace_id": "t1", "parent_id": None, "kind": "chain", "name": "Old Run",
        "status": "ok", "error": None, "error_type": None, "start_ns": T0, "end_ns": T0 + 5 * MS,
        "first_token_ns": None, "latency_ms": 5.0, "model": None, "provider": None,
        "input_tokens": None, "output_tokens": None, "cached_tokens": None, "reasoning_tokens": None,
        "tokens_estimated": False, "cost_usd": None, "chunk_count": 0, "inputs": '{"q":"Hello"}',
        "outputs": '"World"', "tags": '["prod"]', "tags_text": "\nprod\n", "metadata": None,
        "user_id": "u", "session_id": None, "attributes": None,
        "search_text": 'old run\n\n{"q":"hello"}\n"world"',
    }
    score = {"score_id": "s1", "name": "refusal", "value": 0.0, "label": "answered", "passed": True,
             "source": "check", "comment": "no refusal pattern", "trace_id": "t1", "span_id": "r1",
             "experiment_id": None, "created_ns": T0 + 6 * MS}
    writer = StoreWriter(store_url)
    writer.write_prepared(json.loads(json.dumps({"spans": [root], "scores": [score]})))
    writer.close()
    with Store(store_url) as store:
        (trace,) = store.list_traces(TraceFilter(text="world", tag="prod")).items
        detail = store.get_trace("t1")
    assert trace.trace_id == "t1" and trace.score_summary == {
        "refusal": {"value": 0.0, "count": 1, "passed": 1, "failed": 0}}
    assert detail is not None and detail.spans[0].inputs == {"q": "Hello"}
    assert [fields(s) for s in detail.scores] == [score]


# ---- both forms, the same answers ----------------------------------------------------------


def record_workload(url: str, tmp_path: Path) -> None:
    """Model calls (some refused, some with PII, two models, two hours),
    a chain run, feedback and trace-level scores, through the real pipeline."""
    obs = Observer(url, strict=True, entry_points=False, builtins=CHECKS, spill_path=tmp_path / "spill")
    answers = ["Paris is the capital of France, since a long time ago.",
               "I can't help with that.", "Mail bob@example.com, you idiot moron.", "Fine."]
    try:
        for i in range(24):
            start = T0 + (i % 2) * HOUR + i * 1000
            root = obs.start_span("chat", start_ns=start, tags=["demo"])
            llm = obs.start_span("llm", "llm", parent=root, model="gpt-a" if i % 3 else "gpt-b",
                                 start_ns=start + 1, inputs=[{"role": "user", "content": f"question {i}"}])
            obs.end_span(llm, outputs=answers[i % 4], end_ns=start + 2 + i)
            obs.end_span(root, outputs=answers[i % 4], error="boom" if i % 7 == 0 else None,
                         end_ns=start + 3 + 2 * i)
            if i % 5 == 0:
                obs.feedback(root.trace_id, thumbs=1 if i % 2 else -1, rating=1 + i % 5)
                obs.record_score(Score("groundedness", "check", root.trace_id, value=i / 24))
        assert obs.flush(10)
    finally:
        obs.shutdown()
    chain_run(url, tmp_path)


def copy_in_old_form(source: str, target: str) -> None:
    """``source``'s records into ``target`` as every score a row and every
    span all its content (what the store held before)."""
    with Store(source) as store, store.engine.connect() as conn:
        span_rows = [dict(r._mapping) for r in conn.execute(sa.select(schema.spans))]
        score_rows = [dict(r._mapping) for r in conn.execute(sa.select(schema.scores))]
        traces = {r.trace_id: r for r in conn.execute(sa.select(schema.traces))}
    assert any(r["checks"] for r in span_rows) and any(r["content_refs"] for r in span_rows)
    for row in span_rows:
        for score in verdicts.decode(row["span_id"], row["trace_id"], row["start_ns"], row["end_ns"],
                                     row["checks"]):
            score_rows.append(fields(score))
        row["checks"] = None
        for name in ("inputs", "outputs", "tags", "metadata", "attributes"):
            row[name] = None if row[name] is None else dumps(row[name])
        root = row["parent_id"] is None
        row["tags_text"] = traces[row["trace_id"]].tags if root else None
        row["search_text"] = traces[row["trace_id"]].search_text if root else None
    shared_content.inline(span_rows)
    assert not any(r["content_refs"] for r in span_rows)
    writer = StoreWriter(target)
    writer.write_prepared({"spans": span_rows, "scores": score_rows})
    writer.close()


def answers(url: str) -> Any:
    out: dict[str, Any] = {}
    with Store(url) as store:
        page = store.list_traces(limit=100)
        out["traces"] = page.items
        out["details"] = [store.get_trace(t.trace_id) for t in page.items]
        out["scores"] = store.list_scores()
        out["checks"] = store.list_scores(source="check", name="refusal", limit=5)
        out["stats"] = store.score_stats()
        out["aggregates"] = store.aggregates(group_by="model")
    out["quality"] = quality_metrics(url)
    out["by_model"] = quality_by_model(url)
    out["over_time"] = quality_over_time(url, 3600)
    out["later"] = quality_metrics(url, since_ns=T0 + HOUR)
    return plain(out)


def test_both_forms_give_the_same_answers(store_url: str, tmp_path: Path) -> None:
    record_workload(store_url, tmp_path)
    old_form = f"sqlite:///{tmp_path / 'old-form.db'}"
    copy_in_old_form(store_url, old_form)
    assert count(old_form, schema.scores) > 3 * count(store_url, schema.scores) > 0
    new, old = answers(store_url), answers(old_form)
    assert_same(new, old)
    refusals = [sc for detail in new["details"] for sc in detail["scores"] if sc["name"] == "refusal"]
    stats = {(s["source"], s["name"]): s for s in new["stats"]}
    assert stats["check", "refusal"]["count"] == len(refusals) > 24
    assert stats["check", "refusal"]["passed"] == sum(sc["passed"] for sc in refusals) < len(refusals)
    assert new["quality"]["refusals"] == len(refusals) - stats["check", "refusal"]["passed"] > 0
    assert new["quality"]["pii_found"] > 0 and new["quality"]["toxicity"]["count"] > 24


# ---- aggregates computed by the store -----------------------------------------------------


def test_percentiles_by_the_store_are_percentile_cont(store_url: str) -> None:
    rng = random.Random(5)
    spans: list[Span] = []
    latencies: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for i in range(97):
        model = "a" if i % 2 else ("b" if i % 5 else "c")
        trace = three_level_trace(T0 + i * 10**9, model=model, duration_ms=rng.randint(50, 5000))
        llm = trace[3]
        llm.end_ns = llm.start_ns + rng.randint(1, 3_000_000_000)
        llm.first_token_ns = llm.start_ns + rng.randint(1, 1_000_000)
        latencies[model].append((llm.end_ns - llm.start_ns) / 1e6 / 1000)
        spans += trace
    StoreWriter(store_url).write(WriteBatch(spans=spans))
    with Store(store_url) as store:
        # The span scan; the rollups are checked against it in test_rollups.py.
        rows = {r.group: r for r in store.aggregates(group_by="model", from_spans=True)}
        series = store.timeseries("latency_p95", T0, T0 + 97 * 10**9, 4, group_by="model",
                                  from_spans=True)
        traces = store.aggregates(from_spans=True)
    for model, values in latencies.items():
        values.sort()
        row = rows[model]
        assert row.count == len(values)
        for q, got in ((0.5, row.latency_p50), (0.95, row.latency_p95), (0.99, row.latency_p99)):
            assert got == pytest.approx(percentile(values, q), rel=1e-12), (model, q)
    width = 97 * 10**9 / 4
    for point in series:
        bucket = [s for s in spans if s.kind == "llm" and s.model == point.group
                  and int((s.start_ns - T0) / width) == int((point.start_ns - T0) / width)]
        want = sorted((s.end_ns - s.start_ns) / 1e9 for s in bucket if s.end_ns is not None)
        assert point.value == pytest.approx(percentile(want, 0.95), rel=1e-12)
    durations = sorted((t[0].end_ns - t[0].start_ns) / 1e9 for t in [spans[i:i + 4] for i in range(0, 388, 4)])
    assert traces[0].latency_p99 == pytest.approx(percentile(durations, 0.99), rel=1e-12)


# ---- indexes earn their place ------------------------------------------------------------


def test_every_index_serves_a_reader(sqlite_url: str, tmp_path: Path) -> None:
    """Each index of spans, traces and scores is in the plan of a query the
    readers run (the primary keys serve the writer's conflict checks)."""
    from sqlalchemy import event

    from chainsight.storage import alert_queries
    from chainsight.storage.cost import cost_report

    record_workload(sqlite_url, tmp_path)
    statements: list[tuple[str, Any]] = []
    with Store(sqlite_url) as store:
        event.listen(store.engine, "before_cursor_execute",
                     lambda _c, _cur, sql, params, _ctx, _many: statements.append((sql, params)))
        (trace, *_) = store.list_traces().items
        for order in ("start_ns", "cost", "duration"):
            store.list_traces(order=order, limit=5)
        for f in (TraceFilter(status="error"), TraceFilter(model="gpt-a"), TraceFilter(user_id="u"),
                  TraceFilter(session_id="s")):
            store.list_traces(f, limit=5)
        store.get_trace(trace.trace_id)
        store.list_scores(trace_id=trace.trace_id)
        store.score_stats(T0, T0 + HOUR)
        store.aggregates(T0, T0 + HOUR, group_by="model")
        cost_report(store.engine, since_ns=T0, until_ns=T0 + HOUR)
        alert_queries.check_verdicts(store.engine, "refusal", T0, T0 + HOUR, alert_queries.SpanSelect(kind=None))
        alert_queries.span_error_rate(store.engine, T0, T0 + HOUR, alert_queries.SpanSelect(kind="tool"))
        conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
        used = set()
        for sql, params in statements:
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params):
                used.update(word for word in row[-1].split() if word.startswith("ix_"))
        declared = {index.name for table in (schema.spans, schema.traces, schema.scores)
                    for index in table.indexes}
        conn.close()
    assert declared - used == set()


def test_alert_queries_read_both_forms_alike(store_url: str, tmp_path: Path) -> None:
    """Check failure rates and score values for alert rules: a passing verdict
    on its span counts as a passing score row did."""
    from chainsight.storage import alert_queries as q

    rng = random.Random(3)
    spans: list[Span] = []
    scores: list[Score] = []
    for i in range(40):
        trace = three_level_trace(T0 + i * 10**9, model="gpt-a" if i % 2 else "gpt-b")
        llm = trace[3]
        for name in ("refusal", "toxicity"):
            ok = rng.random() > 0.2
            scores.append(Score(name, "check", llm.trace_id, llm.span_id, rng.random(), None, ok,
                                created_ns=llm.end_ns + 1000))
        spans += trace
    lean, rows = store_url, f"sqlite:///{tmp_path / 'rows.db'}"
    StoreWriter(lean).write(WriteBatch(spans=spans, scores=scores))
    rows_writer = StoreWriter(rows)
    rows_writer.write(WriteBatch(spans=spans))
    rows_writer.write(WriteBatch(scores=scores))  # the spans stored already: every score a row
    assert count(lean, schema.scores) < count(rows, schema.scores) == 80
    window = (T0, T0 + 40 * 10**9)
    got = {}
    for url in (lean, rows):
        with Store(url) as store:
            every = q.SpanSelect(kind=None)
            got[url] = plain([
                sorted(q.check_verdicts(store.engine, "refusal", *window, every, group_by=["model"]),
                       key=lambda m: m.labels["model"]),
                q.check_verdicts(store.engine, "toxicity", *window, q.SpanSelect(kind=None, model="gpt-a")),
                sorted(((v.labels, sorted(v.values), sorted(t)) for v, t in
                        q.score_values(store.engine, "toxicity", *window, every, group_by=["model"])),
                       key=lambda x: x[0]["model"]),
            ])
    assert_same(got[lean], got[rows])
    refusal = got[lean][0]
    assert [m["count"] for m in refusal] == [20, 20] and 0 < refusal[0]["value"] < 1
