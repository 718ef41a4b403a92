"""Issue "Trust", items 1 and 6: a spill file cannot jam, and a full queue says so."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import poison, span_names, wait_for

from chainsight.framework.model import Span
from chainsight.framework.observer import Observer
from chainsight.framework.spill import MAGIC, RecordFile, SpillFile, frame
from chainsight.storage.writer import StoreWriter, WriteBatch


def _observer(url: str, spill: Path, **pipeline: Any) -> Observer:
    return Observer(url, builtins=(), entry_points=False, spill_path=spill,
                    pipeline={"flush_interval_s": 0.05, **pipeline})


@contextmanager
def _locked(url: str) -> Iterator[None]:
    locker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def _record(obs: Observer, names: list[str]) -> None:
    for name in names:
        obs.end_span(obs.start_span(name))


def _ready(obs: Observer) -> None:
    assert obs.pipeline.wait_started(10)


def test_a_bad_span_spilled_while_the_store_was_locked_does_not_jam(sqlite_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    obs = _observer(sqlite_url, spill)
    try:
        _ready(obs)
        names = [f"s{i:03d}" for i in range(230)]
        with _locked(sqlite_url):
            _record(obs, [*names[:100], "bad\udcffname", *names[100:]])
            assert not obs.flush(timeout=3)  # spilled, not stored
            assert wait_for(lambda: obs.stats().spilled == 231)
        assert wait_for(lambda: not spill.exists())
        assert obs.flush(timeout=10)
        stored = span_names(sqlite_url)
        assert len(stored) == 231 and "bad\ufffdname" in stored
        _record(obs, ["after"])  # and storing goes on
        assert obs.flush(timeout=10)
        assert "after" in span_names(sqlite_url)
    finally:
        obs.shutdown(timeout=5)


def test_a_spilled_row_the_store_refuses_is_dead_lettered(sqlite_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    obs = _observer(sqlite_url, spill)
    try:
        _ready(obs)
        poison(sqlite_url)
        with _locked(sqlite_url):
            _record(obs, ["a", "poison", "b"])
            assert wait_for(lambda: obs.stats().spilled == 3)
            _record(obs, ["c"])
            assert wait_for(lambda: obs.stats().spilled == 4)
        assert wait_for(lambda: not spill.exists())
        assert span_names(sqlite_url) == ["a", "b", "c"]
        assert obs.stats().dead_lettered == 1
        (letter,) = RecordFile(tmp_path / "deadletter.jsonl").read()
        assert letter["row"]["name"] == "poison" and "refuses poison" in letter["error"]
    finally:
        obs.shutdown(timeout=5)


def _spilled(url: str, name: str) -> bytes:
    span = Span(name)
    span.end_ns = span.start_ns + 1000
    return frame(StoreWriter(url).prepare(WriteBatch(spans=[span])))


def test_a_torn_last_record_is_skipped_and_reported(sqlite_url: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    spill = tmp_path / "spill.jsonl"
    torn = _spilled(sqlite_url, "torn")
    spill.write_bytes(_spilled(sqlite_url, "one") + _spilled(sqlite_url, "two") + torn[: len(torn) // 2])
    with caplog.at_level(logging.ERROR, "chainsight"):
        obs = _observer(sqlite_url, spill)
        try:
            assert wait_for(lambda: span_names(sqlite_url) == ["one", "two"])
            assert wait_for(lambda: not spill.exists())
            _record(obs, ["three"])
            assert obs.flush(timeout=10)
            assert span_names(sqlite_url) == ["one", "three", "two"]
        finally:
            obs.shutdown(timeout=5)
    assert any("damaged record" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    (letter,) = RecordFile(tmp_path / "deadletter.jsonl").read()
    assert "spill record" in letter["error"]


def test_an_append_after_a_torn_record_starts_a_line_of_its_own(sqlite_url: str, tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill.jsonl")
    torn = _spilled(sqlite_url, "torn")
    spill.path.write_bytes(torn[:40])
    span = Span("whole")
    span.end_ns = span.start_ns + 1
    spill.append([StoreWriter(sqlite_url).prepare(WriteBatch(spans=[span]))])
    lines = spill.path.read_bytes().split(b"\n")
    assert lines[1].startswith(MAGIC.encode())
    written: list[Any] = []
    damaged: list[Any] = []
    assert spill.replay(written.append, damaged.append) == 2
    assert [r["spans"][0]["name"] for r in written] == ["whole"] and len(damaged) == 1


def test_disk_full_while_spilling_is_counted_and_storing_resumes(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = tmp_path / "spill.jsonl"
    obs = _observer(sqlite_url, spill)
    try:
        _ready(obs)
        good = obs.pipeline.spill.path
        with _locked(sqlite_url), caplog.at_level(logging.ERROR, "chainsight"):
            obs.pipeline.spill.path = Path("/dev/full")  # every write: ENOSPC
            _record(obs, ["lost-1", "lost-2"])
            assert not obs.flush(timeout=3)
            assert obs.stats().failed == 2
            assert any("cannot write the spill file" in r.getMessage() for r in caplog.records)
            obs.pipeline.spill.path = good  # space is back
            _record(obs, ["kept"])
            assert wait_for(lambda: obs.stats().spilled == 1)
        assert wait_for(lambda: span_names(sqlite_url) == ["kept"])
    finally:
        obs.shutdown(timeout=5)


class _GatedWriter(StoreWriter):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write_prepared(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().write_prepared(rows)


def test_overflow_is_logged_with_the_count(sqlite_url: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    obs = _observer(sqlite_url, tmp_path / "spill.jsonl", queue_size=10, batch_size=1)
    try:
        writer = _GatedWriter(sqlite_url)
        obs.pipeline.wait_ready(10).store = writer
        _record(obs, ["first"])
        assert writer.entered.wait(5)
        with caplog.at_level(logging.WARNING, "chainsight"):
            _record(obs, [f"s{i}" for i in range(40)])
        writer.gate.set()
        assert not obs.flush(timeout=10)
        assert obs.stats().dropped == 30
        said = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
        assert len(said) == 1  # rate-limited: once, not thirty times
        assert "queue_size" in said[0]
    finally:
        obs.shutdown(timeout=5)


def test_dropped_is_exact_under_contention(sqlite_url: str, tmp_path: Path) -> None:
    obs = _observer(sqlite_url, tmp_path / "spill.jsonl", queue_size=50, batch_size=10_000,
                    flush_interval_s=60.0)
    try:
        writer = _GatedWriter(sqlite_url)
        obs.pipeline.wait_ready(10).store = writer
        _record(obs, ["first"])
        obs.pipeline._wake.set()
        assert writer.entered.wait(5)  # the worker is held: nothing leaves the queue but drops

        def spam() -> None:
            for i in range(2000):
                obs.end_span(obs.start_span(f"x{i}"))

        threads = [threading.Thread(target=spam) for _ in range(8)]
        previous = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads between any two steps of put()
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(previous)
        stats = obs.stats()
        assert stats.queue_depth == 50
        assert stats.dropped == 8 * 2000 - 50
        writer.gate.set()
    finally:
        obs.shutdown(timeout=10)


SECRET_KEY = "sk-test-0123456789abcdef0123456789abcdef"
SECRET_MAIL = "alice.secret@example.com"


def test_no_secret_reaches_the_spill_or_dead_letter_files(sqlite_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    obs = Observer(sqlite_url, builtins=(("redaction", "chainsight.plugins.redaction"),), entry_points=False,
                   spill_path=spill, pipeline={"flush_interval_s": 0.05})
    try:
        assert obs.pipeline.wait_started(10)
        poison(sqlite_url)
        with _locked(sqlite_url):
            for name in ("plain", "poison"):
                with obs.span(name, inputs={"key": SECRET_KEY, "note": f"mail {SECRET_MAIL}"}) as span:
                    span.error = f"failed for {SECRET_MAIL}"
            assert wait_for(lambda: obs.stats().spilled == 2)
            raw = spill.read_bytes()
            assert SECRET_KEY.encode() not in raw and SECRET_MAIL.encode() not in raw
            assert b"[redacted:" in raw
        assert wait_for(lambda: obs.stats().dead_lettered == 1)
        letters = (tmp_path / "deadletter.jsonl").read_bytes()
        assert b"poison" in letters
        assert SECRET_KEY.encode() not in letters and SECRET_MAIL.encode() not in letters
    finally:
        obs.shutdown(timeout=5)
