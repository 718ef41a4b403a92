"""Bulk inserts of prepared rows through the driver, for both dialects.

The rows (plain dicts, already JSON-encoded) skip SQLAlchemy's per-row bind
processing: a Core ``INSERT`` is compiled once to driver SQL and run with
``exec_driver_sql``.

On SQLite the rows go in as multi-row ``INSERT .. VALUES (..), (..)``
statements of at most ``SQLITE_MAX_VARIABLES`` parameters, not an executemany:
sqlite3 gives up the GIL around every statement step and reset, and while
another thread of the process runs Python (the pipeline worker, the user's
chain) getting it back can take a whole switch interval (5 ms). An
executemany is two of those waits per row, a multi-row statement two per
statement: 282 against 60 ms per 1000 span rows next to a busy thread
(``bench/gil_convoy.py``). PostgreSQL gets psycopg's executemany (pipelined).

SQLAlchemy's own ways were measured against this and lost clearly (1000 span
rows, same file, ``bench/gil_convoy.py``): ``insert().values(rows)`` compiles
every statement anew (about 1 ms per row: 0.9k rows/s); an executemany with
RETURNING, which SQLAlchemy turns into multi-row statements itself
("insertmanyvalues"), builds each row's parameters in Python (about 20 us
per 30-column row): 54 ms alone and 127 ms next to a busy thread, against 22
and 51 here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

SQLITE_MAX_VARIABLES: Final = 32_766  # SQLite's default limit since 3.32


class BulkInsert:
    """One compiled insert (plain, ``ON CONFLICT DO NOTHING`` or an upsert)
    of the named columns, for one dialect."""

    def __init__(self, stmt: Any, dialect: sa.Dialect, table_name: str, columns: Sequence[str]) -> None:
        self.table_name = table_name
        self.sqlite = dialect.name == "sqlite"
        self.row_values = itemgetter(*columns)
        self._sql: dict[int, str] = {}
        if not self.sqlite:
            self.single_sql = str(stmt.compile(dialect=dialect))
            return
        # Positional: sqlite3 binds a tuple much faster than a dict by name.
        self.single_sql = str(stmt.compile(dialect=sqlite.dialect(paramstyle="qmark")))
        row = "(" + ", ".join("?" * len(columns)) + ")"
        head, found, tail = self.single_sql.partition(f"VALUES {row}")
        if not found:  # pragma: no cover - a change in SQLAlchemy's rendering
            raise RuntimeError(f"unexpected insert statement for {table_name}: {self.single_sql}")
        self._row, self._head, self._tail = row, head + "VALUES ", tail
        self.rows_per_statement = max(1, SQLITE_MAX_VARIABLES // len(columns))

    def run(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
        """Insert ``rows``; how many rows the statements changed."""
        if not rows:
            return 0
        if not self.sqlite:
            return int(conn.exec_driver_sql(self.single_sql, list(rows)).rowcount)
        return sum(conn.exec_driver_sql(sql, params).rowcount for sql, params in self.statements(rows))

    def inserted(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert ``rows`` one statement each; the rows that went in (an
        ``ON CONFLICT DO NOTHING`` insert skips the others). Slower than
        :meth:`run`: for the rare batches that hold rows stored already."""
        out = []
        for row in rows:
            if self.sqlite:
                [(sql, params)] = self.statements([row])
                count = conn.exec_driver_sql(sql, params).rowcount
            else:
                count = conn.exec_driver_sql(self.single_sql, row).rowcount
            if count:
                out.append(row)
        return out

    def statements(self, rows: Sequence[dict[str, Any]]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """SQLite: ``(sql, parameters)`` per multi-row statement."""
        pick, step = self.row_values, self.rows_per_statement
        for i in range(0, len(rows), step):
            chunk = rows[i : i + step]
            try:
                params = tuple(value for row in chunk for value in pick(row))
            except KeyError as missing:  # a malformed row is a bug, never retried
                raise ValueError(f"a {self.table_name} row lacks column {missing}") from None
            yield self._statement_sql(len(chunk)), params

    def _statement_sql(self, rows: int) -> str:
        sql = self._sql.get(rows)
        if sql is None:
            if len(self._sql) > 16:  # batch sizes vary little; bound it anyway
                self._sql.clear()
            sql = self._sql[rows] = self._head + ", ".join([self._row] * rows) + self._tail
        return sql
