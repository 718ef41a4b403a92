"""Why the SQLite writer inserts a batch as multi-row statements.

sqlite3 gives up the GIL around each statement step and reset. While another
thread of the process runs Python (the pipeline worker, the user's chain),
getting it back can take a whole switch interval (5 ms by default). An
executemany of N rows is 2N such waits; one ``INSERT .. VALUES (..), (..)``
statement is two.

Same process, the same prepared span rows (bench/ingest.py's workload) into
the real schema, batches of 1000 in one transaction each, printed side by
side: executemany vs multi-row statements (storage/bulk.py's, and
SQLAlchemy's own "insertmanyvalues", which batches an executemany with
RETURNING into multi-row statements), each alone and next to a thread that
runs Python.

    python bench/gil_convoy.py [--batches 20]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import batches, make_spans

from chainsight.storage import schema
from chainsight.storage.bulk import BulkInsert
from chainsight.storage.engine import upgrade
from chainsight.storage.writer import StoreWriter, WriteBatch

BATCH = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    rows_per_run = [StoreWriter("sqlite://").prepare(WriteBatch(spans=b))["spans"]
                    for b in batches(make_spans(6 * args.batches * BATCH), BATCH)]
    columns = [c.name for c in schema.spans.columns]
    values = {c: sa.bindparam(c) for c in columns}
    multi = BulkInsert(sqlite.insert(schema.spans).values(values).on_conflict_do_nothing(),
                       sqlite.dialect(), "spans", columns)
    single = multi.single_sql
    pick = multi.row_values  # the same column order for both

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "convoy.db"
        upgrade(f"sqlite:///{path}")
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        todo = iter(rows_per_run)

        def executemany() -> None:
            with conn:
                conn.executemany(single, [pick(r) for r in next(todo)])

        def multi_row() -> None:
            with conn:
                for sql, params in multi.statements(next(todo)):
                    conn.execute(sql, params)

        # The rows hold JSON already encoded: the same table with text columns.
        plain = sa.Table("spans", sa.MetaData(), *(
            sa.Column(c.name, sa.Text if isinstance(c.type, sa.JSON) else c.type, primary_key=c.primary_key)
            for c in schema.spans.columns))
        returning = sqlite.insert(plain).on_conflict_do_nothing().returning(plain.c.span_id)
        engine = sa.create_engine(f"sqlite:///{path}")

        def insertmanyvalues() -> None:
            with engine.begin() as sa_conn:
                sa_conn.execute(returning, next(todo)).all()

        print(f"{args.batches} batches of {BATCH} span rows, ms per batch")
        print(f"{'insert':<30} {'alone':>8} {'busy thread':>12}")
        for label, write in (("executemany", executemany), ("multi-row statements (bulk.py)", multi_row),
                             ("SQLAlchemy insertmanyvalues", insertmanyvalues)):
            alone = per_batch(write, args.batches)
            busy = per_batch(write, args.batches, spinning=True)
            print(f"{label:<30} {alone:>8.2f} {busy:>12.2f}")
        conn.close()
        engine.dispose()
    return 0


def per_batch(write: Callable[[], Any], batches: int, *, spinning: bool = False) -> float:
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    spinner = threading.Thread(target=spin, daemon=True)
    if spinning:
        spinner.start()
    try:
        t0 = time.perf_counter()
        for _ in range(batches):
            write()
        return (time.perf_counter() - t0) / batches * 1000
    finally:
        stop.set()
        if spinning:
            spinner.join()


if __name__ == "__main__":
    raise SystemExit(main())
