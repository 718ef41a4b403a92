"""What a span costs to store, before and after, side by side in one run.

Runs the same measurements against two trees: ``before`` (a git revision,
default main as it was before lean storage was merged, 7222664) and
``after`` (this working tree). Each measurement runs in a fresh subprocess
that imports ``chainsight`` from that tree (a throw-away package folder whose
subpackages link to the tree's ``framework/``, ``storage/``... folders, as the
installed package maps them), and the two trees take turns, so a machine that
slows down mid-run slows both.

* disk: the demo workload (``chainsight demo``'s traces through the real
  LangChain handler, default plugins) into a fresh SQLite file, checkpointed
  and VACUUMed: bytes per span, and where they go (tables and their indexes,
  from SQLite's dbstat); again in metrics-only mode; and for one-span traces
  of a small model call (as a bare litellm call makes them);
* ingest: spans per second through the whole default pipeline into SQLite
  (``bench/ingest.py`` (c): 4-span traces, the default plugins), next to raw
  sqlite3 writing the rows that tree stores for the same spans (``ingest.py``
  (a'')); with ``--postgres URL`` the pipeline into PostgreSQL too (a fresh
  schema per run);
* CPU: process CPU per LangChain span (``bench/langchain_overhead.py``'s
  ``prompt | model | parser``), flush included, above a no-op handler's, with
  the default plugins and every span stored;
* readers: on a store of ``--reader-spans`` spans (``ingest.py``'s traces,
  four check verdicts per model call, 2% of them failed), the CPU time of
  the first page of ``chainsight traces`` (50 traces and their score
  summaries), one trace's detail (``show``), and the aggregates by model
  over the whole store (the metrics screen's table); the best of 20 (3 for
  the aggregates).

The measuring code (this file, ``ingest.py``, ``langchain_overhead.py``) is
this tree's for both: only the ``chainsight`` package differs.

    .venv/bin/python bench/lean_storage.py [--before REV] [--rounds 3]
        [--demo-traces 300] [--spans 50000] [--invokes 500] [--postgres URL]
        [--reader-spans 100000] [--only disk,ingest,cpu,readers]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "7222664"
SUBPACKAGES = ("framework", "plugins", "storage", "tui")
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false",
}


# ---- the trees -----------------------------------------------------------------


def export_revision(rev: str, into: Path) -> Path:
    """The files of ``rev`` (tracked files only), under ``into``."""
    tree = into / f"tree-{rev}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def package_folder(tree: Path, into: Path) -> Path:
    """A folder to put on ``sys.path`` whose ``chainsight`` package is ``tree``'s."""
    folder = into / f"pkg-{tree.name}"
    package = folder / "chainsight"
    package.mkdir(parents=True)
    shutil.copy(tree / "chainsight" / "__init__.py", package / "__init__.py")
    for name in SUBPACKAGES:
        (package / name).symlink_to(tree / name, target_is_directory=True)
    return folder


def run_worker(side: str, tree: Path, folder: Path, what: str, args: argparse.Namespace,
               workdir: Path) -> dict[str, Any]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(folder)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", what, "--tree", str(tree),
               "--workdir", str(workdir), "--demo-traces", str(args.demo_traces),
               "--spans", str(args.spans), "--invokes", str(args.invokes),
               "--reader-spans", str(args.reader_spans)]
    if args.postgres:
        command += ["--postgres", args.postgres]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the {what} measurement of {side} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---- measurements (in the worker process) -------------------------------------------


def _vacuumed(db: Path) -> tuple[int, dict[str, int]]:
    """File size after a checkpoint and VACUUM, and bytes per table with its indexes."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    parts: dict[str, int] = {}
    tables = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"))
    for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        table = tables.get(name, name)
        key = table if table == name else f"{table} indexes"
        parts[key] = parts.get(key, 0) + int(size)
    conn.close()
    return db.stat().st_size, parts


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def disk_demo(workdir: Path, traces: int, metrics_only: bool) -> dict[str, Any]:
    import asyncio

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.framework.observer import Observer
    from chainsight.plugins.demo import workload

    db = workdir / f"demo-{int(metrics_only)}.db"
    observer = Observer(f"sqlite:///{db}", spill_path=workdir / "demo.spill.jsonl", entry_points=False,
                        pipeline={"metrics_only": metrics_only})
    skip = () if workload.langgraph_available() else ("langgraph",)
    asyncio.run(workload.run(workload.plan(traces, 7, skip=skip), CallbackHandler(observer), 8))
    if not observer.flush(timeout=120):
        raise SystemExit("the demo workload was not stored in full")
    observer.shutdown()
    size, parts = _vacuumed(db)
    spans = _count(db, "spans")
    return {"spans": spans, "bytes": size, "parts": parts, "scores": _count(db, "scores")}


def disk_model_calls(workdir: Path, count: int, metrics_only: bool) -> dict[str, Any]:
    """One-span traces of a small model call, as a bare litellm call records them."""
    from chainsight.framework.observer import Observer

    db = workdir / f"calls-{int(metrics_only)}.db"
    observer = Observer(f"sqlite:///{db}", spill_path=workdir / "calls.spill.jsonl", entry_points=False,
                        pipeline={"metrics_only": metrics_only, "queue_size": count + 1000})
    for i in range(count):
        span = observer.start_span("litellm.completion", "llm", model="gpt-4o-mini",
                                   inputs=[{"role": "user", "content": f"What is {i} + 1?"}])
        span.provider, span.input_tokens, span.output_tokens = "openai", 14, 6
        observer.end_span(span, outputs={"role": "assistant", "content": f"It is {i + 1}."})
    if not observer.flush(timeout=120):
        raise SystemExit("the model calls were not stored in full")
    observer.shutdown()
    size, parts = _vacuumed(db)
    return {"spans": _count(db, "spans"), "bytes": size, "parts": parts, "scores": _count(db, "scores")}


def measure_disk(workdir: Path, traces: int) -> dict[str, Any]:
    return {
        "demo": disk_demo(workdir, traces, False),
        "demo metrics-only": disk_demo(workdir, traces, True),
        "model calls": disk_model_calls(workdir, 5000, False),
        "model calls metrics-only": disk_model_calls(workdir, 5000, True),
    }


def measure_ingest(workdir: Path, spans: int, postgres: str | None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    import ingest

    from chainsight.storage.engine import upgrade

    out: dict[str, Any] = {}
    for name in ("raw_all", "pipeline"):
        upgrade(f"sqlite:///{workdir / name}.db")
    everything = ingest.stored_rows(spans, 1000, workdir)
    out["sqlite raw rows"] = ingest.timed(lambda: ingest.raw_sqlite_all(workdir / "raw_all.db", everything),
                                          spans)
    out["sqlite pipeline"] = ingest.pipeline_run(f"sqlite:///{workdir}/pipeline.db",
                                                 ingest.make_spans(spans), workdir)
    if postgres:
        url = _fresh_postgres_schema(postgres)
        upgrade(url)
        out["postgres pipeline"] = ingest.pipeline_run(url, ingest.make_spans(spans), workdir)
    return out


def _fresh_postgres_schema(base: str) -> str:
    import uuid

    import sqlalchemy as sa

    from chainsight.storage.engine import normalize_url

    base = normalize_url(base)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    engine.dispose()
    return (sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False))


def measure_cpu(workdir: Path, invokes: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    import langchain_overhead as lo

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.framework.observer import Observer

    db = workdir / "cpu.db"
    observer = Observer(f"sqlite:///{db}", spill_path=workdir / "cpu.spill.jsonl", entry_points=False)
    chain = lo.build_chain()
    modes: dict[str, tuple[Any, Any]] = {
        "noop": ({"callbacks": [lo.NoopHandler()]}, None),
        "chainsight": ({"callbacks": [CallbackHandler(observer)]}, observer),
    }
    for config, obs in modes.values():
        lo.run_round(chain, config, 200, obs)
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_no in range(4):
        for mode in (modes if round_no % 2 == 0 else reversed(modes)):
            config, obs = modes[mode]
            cpu[mode].append(lo.run_round(chain, config, invokes, obs)[1])
    observer.shutdown()
    stored = _count(db, "spans")
    expected = (200 + 4 * invokes) * lo.SPANS_PER_INVOKE
    per_span = [(c - n) / lo.SPANS_PER_INVOKE * 1e6 for c, n in zip(cpu["chainsight"], cpu["noop"], strict=True)]
    return {"us_per_span": statistics.median(per_span), "stored": stored, "expected": expected}


def measure_readers(workdir: Path, count: int) -> dict[str, Any]:
    import random

    sys.path.insert(0, str(ROOT / "bench"))
    import ingest

    from chainsight.framework.model import Score
    from chainsight.storage.engine import upgrade
    from chainsight.storage.query import Store
    from chainsight.storage.writer import StoreWriter, WriteBatch

    url = f"sqlite:///{workdir}/readers.db"
    upgrade(url)
    writer = StoreWriter(url)
    rng = random.Random(1)
    for batch in ingest.batches(ingest.make_spans(count), 1000):
        scores = []
        for span in batch:
            if span.kind == "llm":
                for name in ("toxicity", "pii", "refusal", "length"):
                    ok = rng.random() > 0.02
                    scores.append(Score(name, "check", span.trace_id, span.span_id, 0.0 if ok else 1.0,
                                        "clean" if ok else "found", ok, "fine" if ok else "found one"))
        writer.write(WriteBatch(spans=batch, scores=scores))
    writer.close()

    def best(fn: Any, n: int = 20) -> float:
        times = []
        for _ in range(n):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times) * 1000

    with Store(url) as store:
        trace_id = store.list_traces(limit=50).items[25].trace_id
        return {"traces page (ms)": best(lambda: store.list_traces(limit=50)),
                "trace detail (ms)": best(lambda: store.get_trace(trace_id)),
                "aggregates by model (ms)": best(lambda: store.aggregates(group_by="model"), 3)}


def worker(args: argparse.Namespace) -> int:
    import chainsight

    tree = Path(args.tree)
    if not Path(chainsight.__file__).resolve().is_relative_to(Path(args.workdir).resolve().parent):
        raise SystemExit(f"imported chainsight from {chainsight.__file__}, not from {tree}")
    workdir = Path(tempfile.mkdtemp(dir=args.workdir))
    if args.worker == "disk":
        result = measure_disk(workdir, args.demo_traces)
    elif args.worker == "ingest":
        result = measure_ingest(workdir, args.spans, args.postgres)
    elif args.worker == "readers":
        result = measure_readers(workdir, args.reader_spans)
    else:
        result = measure_cpu(workdir, args.invokes)
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


# ---- the report ------------------------------------------------------------------------


def report(results: dict[str, dict[str, list[dict[str, Any]]]], before: str) -> None:
    sides = list(results)
    print(f"before = {before}, after = this tree; {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    disk = {side: results[side].get("disk") for side in sides}
    if all(disk.values()):
        print("\nbytes per span on disk (VACUUMed SQLite file / spans)")
        print(f"  {'workload':<28}{'before':>10}{'after':>10}{'after/before':>14}")
        for name in disk[sides[0]][0]:  # type: ignore[index]
            values = [disk[side][0][name]["bytes"] / disk[side][0][name]["spans"] for side in sides]  # type: ignore[index]
            print(f"  {name:<28}{values[0]:>10,.0f}{values[1]:>10,.0f}{values[1] / values[0]:>14.2f}")
        print("\n  where the demo's bytes go, per span (table / its indexes)")
        parts = [disk[side][0]["demo"] for side in sides]  # type: ignore[index]
        names = sorted(set(parts[0]["parts"]) | set(parts[1]["parts"]),
                       key=lambda n: -max(p["parts"].get(n, 0) for p in parts))
        for name in names:
            values = [p["parts"].get(name, 0) / p["spans"] for p in parts]
            if max(values) >= 1:
                print(f"  {name:<28}{values[0]:>10,.0f}{values[1]:>10,.0f}")
        print(f"  score rows: {parts[0]['scores']:,} before, {parts[1]['scores']:,} after, "
              f"for {parts[0]['spans']:,} / {parts[1]['spans']:,} spans")
    for what, title, unit in (("ingest", "spans per second stored", "spans/s"),
                              ("cpu", "process CPU per LangChain span above a no-op handler", "us"),
                              ("readers", "reader CPU time on a store of checked spans", "ms")):
        runs = {side: results[side].get(what) for side in sides}
        if not all(runs.values()):
            continue
        print(f"\n{title} (median of {len(runs[sides[0]])} runs; {unit})")  # type: ignore[arg-type]
        keys = ["us_per_span"] if what == "cpu" else list(runs[sides[0]][0])  # type: ignore[index]
        for key in keys:
            values = [statistics.median(r[key] for r in runs[side]) for side in sides]  # type: ignore[union-attr]
            print(f"  {key:<28}{values[0]:>10,.1f}{values[1]:>10,.1f}{values[1] / values[0]:>14.2f}")
        if what == "ingest":
            for side in sides:
                ratio = statistics.median(r["sqlite pipeline"] / r["sqlite raw rows"] for r in runs[side])  # type: ignore[union-attr]
                print(f"  {side}: pipeline / raw sqlite3 of the same rows = {ratio:.0%}")
        if what == "cpu":
            for side in sides:
                lost = [r for r in runs[side] if r["stored"] != r["expected"]]  # type: ignore[union-attr]
                if lost:
                    print(f"  {side}: spans not all stored: {lost}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"git revision to compare with (default {BEFORE})")
    parser.add_argument("--rounds", type=int, default=3, help="runs of ingest and cpu per tree")
    parser.add_argument("--demo-traces", type=int, default=300)
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--reader-spans", type=int, default=100_000)
    parser.add_argument("--only", default="disk,ingest,cpu,readers")
    parser.add_argument("--worker", choices=["disk", "ingest", "cpu", "readers"], help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory(prefix="chainsight-lean-") as tmp:
        base = Path(tmp)
        trees = {"before": export_revision(args.before, base), "after": ROOT}
        folders = {side: package_folder(tree, base) for side, tree in trees.items()}
        results: dict[str, dict[str, list[dict[str, Any]]]] = {side: {} for side in trees}
        for what in args.only.split(","):
            for _ in range(1 if what == "disk" else args.rounds):
                for side, tree in trees.items():
                    work = base / f"work-{side}"
                    work.mkdir(exist_ok=True)
                    results[side].setdefault(what, []).append(
                        run_worker(side, tree, folders[side], what, args, work))
        report(results, args.before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
