"""The metrics screen over 30 days of a large store: span scan against rollups.

Builds a SQLite store of ``--spans`` spans (4-span traces: a chain, a
retriever, a prompt and a model call, started evenly over 30 days, five
models, 5% errors, 70% streamed) with bulk inserts, its trace rows and its
rollups (``rollups.rebuild``, timed: what migration 0007 and ``chainsight db
rebuild-rollups`` cost on it), then times, side by side in one run:

* by model: ``Store.aggregates(group_by="model")`` over the 30 days, from
  every LLM span (``from_spans=True``, what it did before) and from the
  rollups;
* LLM-call series: six ``timeseries`` by model (latency/TTFT/TPOT p95,
  requests, tokens, error rate), both ways;
* the whole screen load over 30 days, as ``tui/screens/metrics.py`` asks
  for it (its series, the traces table, the by-model table, the check pass
  rates, samples), both ways: before the rollups, each series on its own
  from the trace rows and the verdicts from every span; now, all series from
  one read of the rollups.

Each figure is the best of ``--repeat`` wall-clock times (ms).

    .venv/bin/python bench/metrics_screen.py [--spans 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for name, value in {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
                    "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(name, value)

from chainsight.framework.model import new_ordered_id  # noqa: E402
from chainsight.storage import rollups, schema  # noqa: E402
from chainsight.storage.engine import open_engine, upgrade  # noqa: E402
from chainsight.storage.query import Store  # noqa: E402
from chainsight.storage.trace_summary import summarize_trace  # noqa: E402

DAY_NS = 86_400 * 10**9
MS = 10**6
MODELS = (("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-3-5-sonnet", "anthropic"),
          ("llama-3-70b", "groq"), ("mistral-large", "mistral"))
SERIES = ("latency_p95", "ttft_p95", "tpot_p95", "requests", "tokens", "error_rate")
VERDICTS = '[["length",null,null,null,5],["refusal",0.0,null,null,5],["pii",null,null,null,6],' \
    '["toxicity",0.01,null,null,9]]'


def span_rows(traces: int, until_ns: int, seed: int = 1) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Span rows (tuples in the table's column order) and trace rows."""
    rng = random.Random(seed)
    columns = [c.name for c in schema.spans.columns]
    since = until_ns - 30 * DAY_NS
    step = 30 * DAY_NS // traces
    spans: list[tuple[Any, ...]] = []
    trace_rows: list[dict[str, Any]] = []
    for i in range(traces):
        t0 = since + i * step
        trace_id = new_ordered_id()
        model, provider = MODELS[rng.randrange(len(MODELS))]
        llm_ms = rng.lognormvariate(6.5, 0.8)
        streamed = rng.random() < 0.7
        error = rng.random() < 0.05
        out = rng.randint(2, 600)
        root = {"span_id": new_ordered_id(), "trace_id": trace_id, "parent_id": None, "kind": "chain",
                "name": "rag", "status": "error" if error else "ok", "start_ns": t0,
                "end_ns": t0 + int((llm_ms + 40) * MS)}
        rows = [
            root,
            {"span_id": new_ordered_id(), "trace_id": trace_id, "parent_id": root["span_id"],
             "kind": "retriever", "name": "retrieve", "status": "ok", "start_ns": t0 + MS,
             "end_ns": t0 + 20 * MS},
            {"span_id": new_ordered_id(), "trace_id": trace_id, "parent_id": root["span_id"],
             "kind": "prompt", "name": "prompt", "status": "ok", "start_ns": t0 + 21 * MS,
             "end_ns": t0 + 22 * MS},
            {"span_id": new_ordered_id(), "trace_id": trace_id, "parent_id": root["span_id"],
             "kind": "llm", "name": "chat", "status": "error" if error else "ok",
             "start_ns": t0 + 23 * MS, "end_ns": t0 + 23 * MS + int(llm_ms * MS),
             "first_token_ns": t0 + 23 * MS + int(llm_ms * MS * rng.uniform(0.1, 0.5)) if streamed else None,
             "model": model, "provider": provider, "input_tokens": rng.randint(50, 3000),
             "output_tokens": out, "cost_usd": None if rng.random() < 0.03 else out * 1e-5,
             # the default checks' passing verdicts, as storage/verdicts.py stores them
             "checks": None if error else VERDICTS},
        ]
        full = []
        for row in rows:
            whole = {c: None for c in columns}
            whole.update(tokens_estimated=False, chunk_count=0, user_id=None, session_id=None,
                         tags_text=None, search_text=None)
            whole.update(row)
            full.append(whole)
            spans.append(tuple(whole[c] for c in columns))
        trace_rows.append(summarize_trace(full, until_ns))
    return spans, trace_rows


def build(path: Path, count: int, until_ns: int) -> tuple[str, dict[str, float]]:
    url = f"sqlite:///{path}"
    upgrade(url)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    columns = [c.name for c in schema.spans.columns]
    trace_columns = [c.name for c in schema.traces.columns]
    per_round = 100_000 // 4
    for done in range(0, count // 4, per_round):
        spans, traces = span_rows(min(per_round, count // 4 - done), until_ns, seed=done)
        conn.executemany(f"INSERT INTO spans ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         spans)
        conn.executemany(
            f"INSERT OR IGNORE INTO traces ({', '.join(trace_columns)}) "
            f"VALUES ({', '.join('?' * len(trace_columns))})",
            [tuple(t.get(c) for c in trace_columns) for t in traces])
        conn.commit()
    conn.close()
    timings["build spans and traces (s)"] = time.perf_counter() - start
    engine = open_engine(url)
    start = time.perf_counter()
    with engine.begin() as c:
        rollups.rebuild(c)
    timings["rebuild rollups (s)"] = time.perf_counter() - start
    with engine.connect() as c:
        timings["rollup rows"] = c.exec_driver_sql("SELECT count(*) FROM span_rollups").scalar_one()
    engine.dispose()
    return url, timings


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def screen(store: Store, since: int, until: int, buckets: int, from_spans: bool) -> None:
    """What MetricsScreen._fetch asks the store for: ``from_spans``, what it
    asked before the rollups (each series on its own, from the trace rows;
    the verdicts from every span)."""
    from chainsight.tui.screens.metrics import PLOTS

    store.list_samples(since_ns=since, until_ns=until, limit=20_000)
    metrics = [spec.metric for spec in PLOTS if not spec.sample_match]
    if from_spans:
        for metric in metrics:
            store.timeseries(metric, since, until, buckets, from_spans=True)
    else:
        store.series(metrics, since, until, buckets)
    store.aggregates(since, until, from_spans=from_spans)
    store.aggregates(since, until, group_by="model", from_spans=from_spans)
    store.score_stats(since, until, from_spans=from_spans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="build the store at this path and keep it")
    args = parser.parse_args()
    from chainsight.tui.screens.metrics import RANGES

    until = time.time_ns() // 3_600_000_000_000 * 3_600_000_000_000  # as the screen aligns 30 d
    since = until - 30 * DAY_NS
    [buckets] = [b for label, _, b in RANGES if label == "30d"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "metrics.db"
        url, built = build(path, args.spans, until)
        for name, value in built.items():
            print(f"{name:32} {value:,.1f}")
        print(f"{'store size (MB)':32} {path.stat().st_size / 1e6:,.1f}")
        with sqlite3.connect(path) as conn:
            (rollup_bytes,) = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'span_rollups'").fetchone()
        print(f"{'of it rollups (MB)':32} {rollup_bytes / 1e6:,.1f} ({rollup_bytes / args.spans:,.0f} bytes a span)")
        now = until + 1
        with Store(url) as store:
            rows: list[tuple[str, float, float]] = []
            for label, fn in (
                ("aggregates by model, 30 d", lambda f: store.aggregates(since, now, group_by="model",
                                                                         from_spans=f)),
                ("six LLM-call series by model", lambda f: [store.timeseries(m, since, now, 60, group_by="model",
                                                                             from_spans=f) for m in SERIES]),
                ("metrics screen load, 30 d", lambda f: screen(store, since, until, buckets, f)),
            ):
                rows.append((label, best(lambda fn=fn: fn(True), args.repeat),
                             best(lambda fn=fn: fn(False), args.repeat)))
        print(f"\n{args.spans:,} spans over 30 days, best of {args.repeat} (ms)")
        print(f"{'query':32} {'rows scan':>10} {'rollups':>10}")
        for label, before, after in rows:
            print(f"{label:32} {before:10,.0f} {after:10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
