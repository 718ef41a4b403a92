"""Ingest throughput: spans per second into SQLite (and PostgreSQL), side by side.

Same process, same rows (3-level traces: chain -> agent step -> llm + tool,
small inputs and outputs), batches of 1000 spans:

  (a) raw driver executemany of the prepared span rows (sqlite3 / psycopg),
      one transaction per batch, no trace totals: the floor;
  (a'') the same for every row the default pipeline stores for these spans:
      span rows, the checks' score rows and the trace rows (computed outside
      the timing): the floor for (c);
  (b) StoreWriter.write (serialise + insert + recompute trace totals);
  (c) the whole pipeline: Observer.start_span/end_span on this thread, the
      worker thread with the default plugins, the writer, until flush();
      spans written per second (a queue large enough that nothing is dropped);
  (c') the same with no plugins loaded: what the pipeline itself costs.

    python bench/ingest.py [--spans 200000] [--batch 1000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsight.framework.model import Span
from chainsight.storage import schema
from chainsight.storage.engine import normalize_url, upgrade
from chainsight.storage.writer import StoreWriter, WriteBatch

SPANS_PER_TRACE = 4


def make_spans(count: int) -> list[Span]:
    spans: list[Span] = []
    t = time.time_ns() - count * 1_000_000
    for i in range(count // SPANS_PER_TRACE):
        t += 4_000_000
        root = Span("rag-chain", "chain", start_ns=t)
        root.inputs = {"question": f"what is item {i}?"}
        root.user_id, root.session_id, root.tags = f"user{i % 50}", f"s{i % 500}", ["bench"]
        step = Span("agent", "agent", trace_id=root.trace_id, parent_id=root.span_id, start_ns=t + 10)
        llm = Span("ChatModel", "llm", trace_id=root.trace_id, parent_id=step.span_id, start_ns=t + 20)
        llm.model, llm.provider = "gpt-4o-mini", "openai"
        llm.inputs = {"messages": [{"role": "user", "content": f"what is item {i}?"}]}
        llm.outputs = {"text": f"item {i} is a thing"}
        llm.input_tokens, llm.output_tokens, llm.cost_usd = 12, 7, 0.00002
        llm.first_token_ns, llm.end_ns = t + 500_000, t + 2_000_000
        tool = Span("search", "tool", trace_id=root.trace_id, parent_id=step.span_id, start_ns=t + 30)
        tool.inputs, tool.outputs, tool.end_ns = {"q": "item"}, ["doc1", "doc2"], t + 2_500_000
        step.end_ns, root.end_ns = t + 2_600_000, t + 3_000_000
        root.outputs = {"answer": f"item {i} is a thing"}
        for s in (root, step, llm, tool):
            s.status = "ok"
        spans.extend((llm, tool, step, root))  # children end first, as in real runs
    return spans


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def timed(fn: Callable[[], None], count: int) -> float:
    t0 = time.perf_counter()
    fn()
    return count / (time.perf_counter() - t0)


def raw_sqlite(path: Path, rows: list[list[dict[str, Any]]]) -> None:
    columns = [c.name for c in schema.spans.columns]
    sql = f"INSERT INTO spans ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for batch in rows:
        with conn:
            conn.executemany(sql, batch)
    conn.close()


def stored_rows(count: int, size: int, workdir: Path) -> list[dict[str, list[dict[str, Any]]]]:
    """Per batch, the rows the default pipeline stores: spans (processed by
    the default plugins), their score rows and their traces' rows."""
    from chainsight.framework.observer import Observer
    from chainsight.storage.trace_summary import summarize_trace

    obs = Observer(f"sqlite:///{workdir}/scratch.db", spill_path=workdir / "scratch.spill.jsonl",
                   entry_points=False)
    obs.pipeline.wait_started(30)  # the plugins are loaded on the worker
    writer = StoreWriter("sqlite://")
    out = []
    for batch in batches(make_spans(count), size):
        scores = obs.pipeline._process_spans(batch)  # the plugins alone, no storage
        rows = writer.prepare(WriteBatch(spans=batch, scores=scores))
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for row in rows["spans"]:
            by_trace.setdefault(row["trace_id"], []).append(row)
        rows["traces"] = [summarize_trace(group, 0) for group in by_trace.values()]
        out.append(rows)
    obs.shutdown(timeout=5)
    return out


def raw_sqlite_all(path: Path, batches_of_rows: list[dict[str, list[dict[str, Any]]]]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = {}
    for name in ("spans", "scores", "traces"):
        columns = [c.name for c in schema.metadata.tables[name].columns]
        sql[name] = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    for rows in batches_of_rows:
        with conn:
            for name in ("spans", "scores", "traces"):
                conn.executemany(sql[name], rows.get(name, ()))
    conn.close()


def raw_postgres(url: str, rows: list[list[dict[str, Any]]]) -> None:
    import psycopg

    columns = [c.name for c in schema.spans.columns]
    sql = f"INSERT INTO spans ({', '.join(columns)}) VALUES ({', '.join(f'%({c})s' for c in columns)})"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("TRUNCATE spans, traces")
        conn.commit()
        for batch in rows:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, batch)


def copy_postgres(url: str, rows: list[list[dict[str, Any]]]) -> None:
    import psycopg

    columns = [c.name for c in schema.spans.columns]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("TRUNCATE spans, traces")
        conn.commit()
        for batch in rows:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f"COPY spans ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in batch:
                    copy.write_row([row[c] for c in columns])


def writer_run(url: str, spans: list[Span], size: int) -> None:
    writer = StoreWriter(url)
    for batch in batches(spans, size):
        writer.write(WriteBatch(spans=batch))
    writer.close()


def pipeline_run(url: str, spans: list[Span], workdir: Path, *, plugins: bool = True) -> float:
    from chainsight.framework.observer import Observer

    # A queue that holds the whole run: this measures throughput, not the drop policy.
    obs = Observer(url, spill_path=workdir / "bench.spill.jsonl", entry_points=False,
                   builtins=None if plugins else (),
                   pipeline={"queue_size": len(spans) + 1000, "batch_size": 1000})
    obs.flush(timeout=10)
    t0 = time.perf_counter()
    for template in spans:
        span = obs.start_span(template.name, template.kind, span_id=template.span_id,
                              trace_id=template.trace_id, parent_id=template.parent_id,
                              start_ns=template.start_ns, inputs=template.inputs,
                              model=template.model, user_id=template.user_id)
        span.input_tokens, span.output_tokens = template.input_tokens, template.output_tokens
        span.first_token_ns = template.first_token_ns
        obs.end_span(span, outputs=template.outputs, end_ns=template.end_ns)
    ok = obs.flush(timeout=120)
    elapsed = time.perf_counter() - t0
    stats = obs.stats()
    rate = stats.written / elapsed
    obs.shutdown(timeout=10)
    if not ok or stats.dropped or stats.written < len(spans):
        print(f"  pipeline incomplete: {stats}", file=sys.stderr)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--postgres", metavar="URL", help="also measure this PostgreSQL database")
    parser.add_argument("--no-pipeline", action="store_true", help="skip (c)")
    args = parser.parse_args()

    spans = make_spans(args.spans)
    prepared = [StoreWriter("sqlite://").prepare(WriteBatch(spans=b))["spans"]
                for b in batches(spans, args.batch)]
    results: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("raw", "raw_all", "writer", "pipeline"):
            upgrade(f"sqlite:///{work / name}.db")
        results.append(("sqlite", "(a) raw sqlite3 executemany, prepared rows",
                        timed(lambda: raw_sqlite(work / "raw.db", prepared), len(spans))))
        everything = stored_rows(args.spans, args.batch, work)
        per_span = sum(len(r.get("scores", ())) + len(r["traces"]) for r in everything) / len(spans)
        results.append(("sqlite", f"(a'') the same, + {per_span:.2f} score/trace rows per span",
                        timed(lambda: raw_sqlite_all(work / "raw_all.db", everything), len(spans))))
        results.append(("sqlite", "(b) StoreWriter.write (serialise+insert+totals)",
                        timed(lambda: writer_run(f"sqlite:///{work}/writer.db", spans, args.batch),
                              len(spans))))
        if not args.no_pipeline:
            results.append(("sqlite", "(c) pipeline: start/end_span -> worker -> writer",
                            pipeline_run(f"sqlite:///{work}/pipeline.db", make_spans(args.spans), work)))
            upgrade(f"sqlite:///{work}/bare.db")
            results.append(("sqlite", "(c') the same pipeline with no plugins loaded",
                            pipeline_run(f"sqlite:///{work}/bare.db", make_spans(args.spans), work,
                                         plugins=False)))
        if args.postgres:
            url = normalize_url(args.postgres)
            upgrade(url)
            results.append(("postgres", "(a) raw psycopg executemany, prepared rows",
                            timed(lambda: raw_postgres(url, prepared), len(spans))))
            results.append(("postgres", "(a') raw psycopg COPY, prepared rows",
                            timed(lambda: copy_postgres(url, prepared), len(spans))))
            _truncate(url)
            results.append(("postgres", "(b) StoreWriter.write (serialise+insert+totals)",
                            timed(lambda: writer_run(url, spans, args.batch), len(spans))))
            if not args.no_pipeline:
                _truncate(url)
                results.append(("postgres", "(c) pipeline: start/end_span -> worker -> writer",
                                pipeline_run(url, make_spans(args.spans), work)))
                _truncate(url)
                results.append(("postgres", "(c') the same pipeline with no plugins loaded",
                                pipeline_run(url, make_spans(args.spans), work, plugins=False)))
    print(f"{args.spans} spans, batches of {args.batch}")
    print(f"{'store':<9} {'path':<52} {'spans/s':>10}")
    for store, label, rate in results:
        print(f"{store:<9} {label:<52} {rate:>10,.0f}")
    return 0


def _truncate(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE spans, traces")
    engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
