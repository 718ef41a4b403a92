"""Pipeline behaviour under pressure: full queue, store outages, shutdown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

from tcp_proxy import TcpProxy

from chainsight.framework import hookimpl
from chainsight.framework.observer import Observer
from chainsight.storage.engine import open_engine
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter


def _span_names(url: str) -> list[str]:
    with open_engine(url).connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT name FROM spans ORDER BY name"))]


def _wait(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class GatedWriter(StoreWriter):
    """A real writer whose first write waits for a gate, to hold the worker busy."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write_prepared(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().write_prepared(rows)


def test_full_queue_drops_oldest_and_counts(sqlite_url: str, tmp_path: Path) -> None:
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=tmp_path / "s.jsonl",
                   pipeline={"queue_size": 10, "batch_size": 1})
    writer = GatedWriter(sqlite_url)
    obs.pipeline.wait_ready().store = writer
    first = obs.start_span("first")
    obs.end_span(first)
    assert writer.entered.wait(5)  # the worker holds "first" and waits at the gate
    for i in range(15):
        obs.end_span(obs.start_span(f"s{i:02d}"))
    assert obs.stats().dropped == 5
    writer.gate.set()
    assert not obs.flush(timeout=10)  # 5 spans recorded before it were dropped
    assert obs.flush(timeout=10)  # and nothing since
    stats = obs.stats()
    assert (stats.written, stats.dropped, stats.queued) == (11, 5, 16)
    assert _span_names(sqlite_url) == ["first"] + [f"s{i:02d}" for i in range(5, 15)]
    obs.shutdown(timeout=5)


def _record(obs: Observer, prefix: str, n: int) -> None:
    for i in range(n):
        with obs.span(f"{prefix}-root-{i}") as root, obs.span(f"{prefix}-child-{i}", kind="llm"):
            pass
        assert root.end_ns


def test_sqlite_locked_spills_and_replays_without_duplicates(sqlite_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=spill,
                   pipeline={"flush_interval_s": 0.05})
    _record(obs, "before", 3)
    assert obs.flush(timeout=10)

    path = sqlite_url.removeprefix("sqlite:///")
    locker = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        _record(obs, "during", 5)
        assert not obs.flush(timeout=3)  # processed, but spilled: not stored yet
        assert _wait(lambda: obs.stats().spilled >= 10)
        assert spill.exists()
        _record(obs, "more", 2)  # keeps order behind the spilled batches
        assert not obs.flush(timeout=3)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert _wait(lambda: not spill.exists() and obs.stats().replayed >= 14)
    assert obs.flush(timeout=10)  # everything is in the store now
    names = _span_names(sqlite_url)
    assert len(names) == len(set(names)) == 6 + 10 + 4
    stats = obs.stats()
    assert stats.failed == 0 and stats.dropped == 0
    # the trace totals were rebuilt for traces that arrived through the spill
    page = Store(sqlite_url).list_traces(limit=100)
    assert sorted(t.span_count for t in page.items) == [2] * 10
    obs.shutdown(timeout=5)


@pytest.mark.postgres
def test_postgres_outage_spills_and_replays(postgres_url: str, tmp_path: Path) -> None:
    url = sa.make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    spill = tmp_path / "spill.jsonl"
    open_engine(proxied)  # migrate while the line is up
    obs = Observer(proxied, builtins=(), entry_points=False, spill_path=spill,
                   pipeline={"flush_interval_s": 0.05})
    try:
        _record(obs, "before", 3)
        assert obs.flush(timeout=10)
        proxy.cut()
        _record(obs, "during", 5)
        assert not obs.flush(timeout=3)  # spilled, not stored
        assert _wait(lambda: obs.stats().spilled >= 10, timeout=60)
        proxy.restore()
        _record(obs, "after", 2)
        obs.flush(timeout=30)
        assert _wait(lambda: not spill.exists(), timeout=60)
        assert obs.flush(timeout=30)
        names = _span_names(postgres_url)
        expected = [f"{p}-{k}-{i}" for p, n in (("before", 3), ("during", 5), ("after", 2))
                    for i in range(n) for k in ("root", "child")]
        assert sorted(n for n in names if n in expected) == sorted(expected)
        assert len(names) == len(set(names))
    finally:
        obs.shutdown(timeout=10)
        proxy.close()


def test_spill_left_by_a_dead_process_is_replayed_on_start(sqlite_url: str, tmp_path: Path) -> None:
    from chainsight.framework.model import Span
    from chainsight.framework.spill import SpillFile
    from chainsight.storage.writer import WriteBatch

    spill = SpillFile(tmp_path / "spill.jsonl")
    orphan = Span("orphan")
    orphan.end_ns = orphan.start_ns + 1000
    spill.append([StoreWriter(sqlite_url).prepare(WriteBatch(spans=[orphan]))])
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=spill.path)
    assert _wait(lambda: "orphan" in _span_names(sqlite_url))
    assert not spill.path.exists()
    obs.shutdown(timeout=5)


def test_sigterm_drains_the_queue(tmp_path: Path) -> None:
    db = tmp_path / "term.db"
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        os.environ["CHAINSIGHT_STORAGE_URL"] = "sqlite:///{db}"
        from chainsight.framework import get_observer
        obs = get_observer()
        for i in range(500):
            with obs.span(f"span-{{i}}"):
                pass
        print("recorded", flush=True)
        time.sleep(30)
        """
    )
    # The worker would only write after 60 s: only the SIGTERM drain can store them.
    (tmp_path / "plugins.toml").write_text("[pipeline]\nflush_interval_s = 60\nbatch_size = 100000\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSIGHT_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "recorded"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    assert len(_span_names(f"sqlite:///{db}")) == 500


def test_shutdown_respects_one_deadline(sqlite_url: str, tmp_path: Path) -> None:
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=tmp_path / "s.jsonl")
    writer = GatedWriter(sqlite_url)
    obs.pipeline.wait_ready().store = writer
    obs.end_span(obs.start_span("stuck"))
    assert writer.entered.wait(5)
    t0 = time.monotonic()
    assert obs.shutdown(timeout=0.5) is False
    assert time.monotonic() - t0 < 2.0
    writer.gate.set()


def test_pipeline_counters_are_stored_as_samples(sqlite_url: str, tmp_path: Path) -> None:
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=tmp_path / "s.jsonl",
                   pipeline={"stats_interval_s": 0.05, "flush_interval_s": 0.02})
    _record(obs, "x", 3)
    assert obs.flush(timeout=10)
    time.sleep(0.1)
    _record(obs, "y", 1)
    obs.shutdown(timeout=10)
    samples = Store(sqlite_url).list_samples(name="chainsight_spans_written_total")
    assert samples and all(s.source == "pipeline" and "process" in s.labels for s in samples)
    assert max(s.value for s in samples) == 8.0  # the final sample at shutdown counts every span
    dropped = Store(sqlite_url).list_samples(name="chainsight_spans_dropped_total")
    assert dropped and dropped[-1].value == 0.0


class ThreadWitness:
    """Notes the thread of every pipeline hook, and whether the spans a sink
    receives are already in the store when it runs."""

    name = "witness"

    def __init__(self, db: Path) -> None:
        self.db = db
        self.threads: set[str] = set()
        self.unstored: list[str] = []
        self.batches: list[list[str]] = []

    @hookimpl
    def process_span(self, span: Any) -> None:
        self.threads.add(threading.current_thread().name)

    @hookimpl
    def spans_finished(self, spans: Any) -> None:
        self.threads.add(threading.current_thread().name)
        names = [s.name for s in spans]
        with sqlite3.connect(self.db) as conn:
            stored = {r[0] for r in conn.execute("SELECT name FROM spans")}
        self.unstored.extend(n for n in names if n not in stored)
        self.batches.append(names)


def test_hooks_run_on_the_worker_and_sinks_after_their_batch_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "witness.db"
    witness = ThreadWitness(db)
    obs = Observer(f"sqlite:///{db}", spill_path=tmp_path / "spill.jsonl", builtins=(),
                   entry_points=False, plugins=[witness], pipeline={"batch_size": 7})
    try:
        for i in range(100):
            obs.end_span(obs.start_span(f"s{i:03d}", "tool"))
            if i % 10 == 0:
                time.sleep(0.01)  # let batches form while others are written
        assert obs.flush(timeout=20)
    finally:
        obs.shutdown(timeout=10)
    assert witness.threads == {"chainsight-pipeline"}
    assert witness.unstored == []
    # Batches reach the sinks (and the store) in the order they were recorded.
    assert [n for batch in witness.batches for n in batch] == [f"s{i:03d}" for i in range(100)]
    assert len(witness.batches) > 1
