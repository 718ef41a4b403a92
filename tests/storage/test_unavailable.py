from __future__ import annotations

import socket
import sqlite3
import time

import pytest
from storage_builders import three_level_trace

from chainsight.storage.engine import StoreUnavailable, open_engine
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter, WriteBatch


def test_locked_sqlite_raises_store_unavailable(sqlite_url: str) -> None:
    writer = StoreWriter(sqlite_url, busy_timeout_ms=200)
    writer.write(WriteBatch(spans=three_level_trace(1)))  # creates and migrates
    locker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            writer.write(WriteBatch(spans=three_level_trace(2)))
        assert time.monotonic() - started < 5
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    writer.write(WriteBatch(spans=three_level_trace(3)))  # and it recovers
    assert Store(sqlite_url).count_traces() == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_raises_store_unavailable() -> None:
    url = f"postgresql+psycopg://nobody:x@127.0.0.1:{closed_port()}/none"
    writer = StoreWriter(url)  # lazy: building it never fails
    with pytest.raises(StoreUnavailable):
        writer.write(WriteBatch(spans=three_level_trace(1)))
    with pytest.raises(StoreUnavailable):
        open_engine(url)
    with pytest.raises(StoreUnavailable):
        Store(url)


def test_bugs_are_not_unavailability(sqlite_url: str) -> None:
    writer = StoreWriter(sqlite_url)
    with pytest.raises(ValueError, match="a spans row lacks column 'trace_id'"):  # a bug: no retry
        writer.write_prepared({"spans": [{"span_id": "x"}]})
