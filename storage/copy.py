"""Copy a whole store into another (``chainsight db copy --to URL``), for
example from the embedded SQLite file to PostgreSQL.

Every table of :mod:`chainsight.storage.schema` is copied row for row, as
stored, except runtime state that belongs to one store: ``leases`` (who
evaluates alerts now) and ``followers`` (positions in the source's own
insertion order). The source is read in one transaction, a consistent
snapshot even while applications keep writing to it (SQLite WAL; REPEATABLE
READ on PostgreSQL); the destination is migrated to the current schema and
written in batches, each its own transaction. The destination must be empty
(a store with no traces, spans, scores or samples), so that the count check
at the end (every table's rows in the destination equal the snapshot's) means
what it says. ``samples.sample_id`` is not copied: the destination numbers
its own rows (a PostgreSQL sequence would not know of copied ids).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chainsight.storage import schema
from chainsight.storage.engine import (
    MAINTENANCE_BUSY_TIMEOUT_MS,
    display_url,
    open_engine,
    translate_errors,
)

SKIPPED: Final = ("leases", "followers")
NOT_COPIED_COLUMNS: Final = {"samples": ("sample_id",)}
CHECKED_EMPTY: Final = ("traces", "spans", "scores", "samples")
BATCH: Final = 2000


class CopyError(ValueError):
    """The copy cannot start (a destination that is not empty) or its count check failed."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    copied: int
    destination: int

    @property
    def ok(self) -> bool:
        return self.source == self.copied == self.destination


Progress = Callable[[str, int, int], None]  # (table, rows copied in all, rows to copy in all)


def tables() -> list[sa.Table]:
    """The tables a copy moves, parents before children (none has a foreign key)."""
    return [t for t in schema.metadata.sorted_tables if t.name not in SKIPPED]


def _insert(engine: sa.Engine, table: sa.Table) -> Any:
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def copy_store(source_url: str, target_url: str, *, batch_size: int = BATCH,
               progress: Progress | None = None) -> list[TableCount]:
    """Copy the store at ``source_url`` into the (empty) store at
    ``target_url``; one :class:`TableCount` per table. Raises
    :class:`CopyError` when the destination has data or a count differs."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if sa.make_url(source_url) == sa.make_url(target_url):
        raise CopyError(f"the source and the destination are the same store: {display_url(source_url)}")
    source = open_engine(source_url, create=False, busy_timeout_ms=MAINTENANCE_BUSY_TIMEOUT_MS)
    try:
        target = open_engine(target_url, busy_timeout_ms=MAINTENANCE_BUSY_TIMEOUT_MS)
    except BaseException:
        source.dispose()
        raise
    try:
        with translate_errors(target_url), target.connect() as conn:
            busy = [t.name for t in tables() if t.name in CHECKED_EMPTY and _count(conn, t)]
        if busy:
            raise CopyError(f"{display_url(target_url)} is not empty (it has rows in "
                            f"{', '.join(busy)}): copy into a new store")
        counts: list[TableCount] = []
        with translate_errors(source_url), source.connect() as read:
            if source.dialect.name == "postgresql":
                read = read.execution_options(isolation_level="REPEATABLE READ")
            with read.begin():
                if source.dialect.name == "sqlite":
                    # pysqlite begins only before a write: begin here, so that every
                    # table is read from one snapshot.
                    read.exec_driver_sql("BEGIN")
                todo = {t.name: _count(read, t) for t in tables()}
                total, done = sum(todo.values()), 0
                for table in tables():
                    skip = NOT_COPIED_COLUMNS.get(table.name, ())
                    columns = [c for c in table.columns if c.name not in skip]
                    copied = 0
                    rows = read.execution_options(yield_per=batch_size).execute(sa.select(*columns))
                    for part in rows.partitions():
                        values = [dict(r._mapping) for r in part]
                        with translate_errors(target_url), target.begin() as write:
                            write.execute(_insert(target, table), values)
                        copied += len(values)
                        done += len(values)
                        if progress is not None:
                            progress(table.name, done, total)
                    counts.append(TableCount(table.name, todo[table.name], copied, 0))
        with translate_errors(target_url), target.connect() as conn:
            counts = [TableCount(c.table, c.source, c.copied, _count(conn, schema.metadata.tables[c.table]))
                      for c in counts]
        wrong = [c for c in counts if not c.ok]
        if wrong:
            raise CopyError("count check failed: " + "; ".join(
                f"{c.table}: {c.source} in the source, {c.destination} in the destination"
                for c in wrong))
        return counts
    finally:
        source.dispose()
        target.dispose()
