"""Retention: delete what is older than a cutoff, without blocking writers for long.

A trace is old when it *started* before the cutoff; it goes with its spans
and its scores (feedback, checks, judges). Samples (GPU readings, the
pipelines' counters) are old by their own time. Alerts, datasets and
experiments are kept: an experiment's result rows carry their own output
and figures, and an alert its summary.

Deletes run in small batches (``batch_size`` traces, or samples), each its
own short transaction: on SQLite a transaction holds the one write lock only
for a batch (a writer waits milliseconds, well inside its busy timeout), on
PostgreSQL it locks only the rows it deletes. A span or score that arrives
for a trace after its batch was deleted is stored as usual (late data is
never refused); the next prune takes it.

SQLite gives the freed pages back with ``PRAGMA incremental_vacuum`` in
small steps where the store was made with ``auto_vacuum = INCREMENTAL``
(every store made since this module exists; ``storage/engine.py``);
an older store reuses its free pages for new rows, and :func:`vacuum`
rewrites it once (converting it to incremental, and blocking writers
while it runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import sqlalchemy as sa

from chainsight.storage import schema
from chainsight.storage.engine import (
    MAINTENANCE_BUSY_TIMEOUT_MS,
    display_url,
    open_engine,
    translate_errors,
)

T = schema.traces
SP = schema.spans
SC = schema.scores
SM = schema.samples

DEFAULT_BATCH: Final = 200
"""Traces per delete transaction (a few thousand rows with their spans and scores)."""
VACUUM_STEP_PAGES: Final = 2000
"""Pages handed back per ``incremental_vacuum`` transaction (8 MiB of 4 KiB pages)."""


@dataclass(frozen=True)
class PruneResult:
    """What was deleted (or, for a dry run, would be)."""

    cutoff_ns: int
    traces: int = 0
    spans: int = 0
    scores: int = 0
    samples: int = 0
    batches: int = 0
    dry_run: bool = False
    pages_freed: int = 0  # SQLite pages given back to the file system


Progress = Callable[[PruneResult], None]


def _old_traces(cutoff_ns: int) -> sa.Select[Any]:
    return sa.select(T.c.trace_id).where(T.c.start_ns < cutoff_ns)


def count_old(engine: sa.Engine, url: str, cutoff_ns: int) -> PruneResult:
    """What :func:`prune` would delete now (a dry run)."""
    old = _old_traces(cutoff_ns)
    counts = []
    with translate_errors(url), engine.connect() as conn:
        for stmt in (
            sa.select(sa.func.count()).select_from(old.subquery()),
            sa.select(sa.func.count()).select_from(SP).where(SP.c.trace_id.in_(old)),
            sa.select(sa.func.count()).select_from(SC).where(SC.c.trace_id.in_(old)),
            sa.select(sa.func.count()).select_from(SM).where(SM.c.time_ns < cutoff_ns),
        ):
            counts.append(int(conn.execute(stmt).scalar_one()))
    traces, spans, scores, samples = counts
    return PruneResult(cutoff_ns, traces=traces, spans=spans, scores=scores, samples=samples,
                       dry_run=True)


def prune(url: str, cutoff_ns: int, *, dry_run: bool = False, batch_size: int = DEFAULT_BATCH,
          pause_s: float = 0.0, progress: Progress | None = None,
          engine: sa.Engine | None = None) -> PruneResult:
    """Delete the traces that started before ``cutoff_ns`` (ns since the
    epoch) with their spans and scores, and the samples older than it, in
    batches of ``batch_size`` traces, each in its own transaction, sleeping
    ``pause_s`` between batches; then give SQLite's free pages back where the
    store allows it. ``progress`` is called after every batch with the totals
    so far. ``dry_run``: count, delete nothing."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    own = engine is None
    engine = engine if engine is not None else open_engine(
        url, create=False, busy_timeout_ms=MAINTENANCE_BUSY_TIMEOUT_MS)
    try:
        if dry_run:
            return count_old(engine, url, cutoff_ns)
        result = PruneResult(cutoff_ns)
        while True:
            with translate_errors(url), engine.begin() as conn:
                ids = list(conn.execute(_old_traces(cutoff_ns).order_by(T.c.start_ns)
                                        .limit(batch_size)).scalars())
                if not ids:
                    break
                scores = conn.execute(sa.delete(SC).where(SC.c.trace_id.in_(ids))).rowcount
                spans = conn.execute(sa.delete(SP).where(SP.c.trace_id.in_(ids))).rowcount
                traces = conn.execute(sa.delete(T).where(T.c.trace_id.in_(ids))).rowcount
            result = _add(result, traces=traces, spans=spans, scores=scores)
            if progress is not None:
                progress(result)
            if pause_s:
                time.sleep(pause_s)
        while True:
            with translate_errors(url), engine.begin() as conn:
                sample_ids = list(conn.execute(
                    sa.select(SM.c.sample_id).where(SM.c.time_ns < cutoff_ns)
                    .limit(batch_size * 20)).scalars())
                if not sample_ids:
                    break
                samples = conn.execute(sa.delete(SM).where(SM.c.sample_id.in_(sample_ids))).rowcount
            result = _add(result, samples=samples)
            if progress is not None:
                progress(result)
        if engine.dialect.name == "sqlite":
            result = replace(result, pages_freed=incremental_vacuum(engine, url))
        return result
    finally:
        if own:
            engine.dispose()


def _add(r: PruneResult, *, traces: int = 0, spans: int = 0, scores: int = 0,
         samples: int = 0) -> PruneResult:
    return PruneResult(r.cutoff_ns, r.traces + traces, r.spans + spans, r.scores + scores,
                       r.samples + samples, r.batches + 1, r.dry_run, r.pages_freed)


def auto_vacuum_mode(engine: sa.Engine) -> int:
    """SQLite's ``auto_vacuum``: 0 none, 1 full, 2 incremental."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one())


def incremental_vacuum(engine: sa.Engine, url: str) -> int:
    """Hand a SQLite store's free pages back to the file system in steps of
    :data:`VACUUM_STEP_PAGES` (each a short write transaction); the pages
    freed. 0 where the store is not in incremental mode (see :func:`vacuum`)."""
    if engine.dialect.name != "sqlite" or auto_vacuum_mode(engine) != 2:
        return 0
    freed = 0
    with translate_errors(url):
        while True:
            with engine.connect() as conn:
                free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
                if free == 0:
                    break
                conn.exec_driver_sql(f"PRAGMA incremental_vacuum({min(free, VACUUM_STEP_PAGES)})")
                conn.commit()
                left = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            if left >= free:  # another connection holds the pages (a long read): next time
                break
            freed += free - left
    return freed


def vacuum(url: str) -> None:
    """Rewrite a SQLite store in incremental auto-vacuum mode (``VACUUM``):
    gives every free page back and lets later prunes do so in steps. It holds
    the write lock for the whole rewrite: writers spill meanwhile."""
    engine = open_engine(url, create=False, busy_timeout_ms=MAINTENANCE_BUSY_TIMEOUT_MS)
    try:
        if engine.dialect.name != "sqlite":
            raise ValueError(f"{display_url(url)}: VACUUM here is for SQLite stores; PostgreSQL's autovacuum "
                             "reuses the space")
        with translate_errors(url), engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA auto_vacuum = INCREMENTAL")
            conn.commit()
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
    finally:
        engine.dispose()
