"""``db copy``: a SQLite store copied into another store (PostgreSQL, and SQLite)
is equal row for row, table by table; a store that is not empty is refused."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from storage_builders import three_level_trace

from chainsight.framework.cli import main
from chainsight.framework.model import Alert, Sample, Score
from chainsight.storage import schema
from chainsight.storage.copy import NOT_COPIED_COLUMNS, CopyError, copy_store, tables
from chainsight.storage.engine import open_engine
from chainsight.storage.evaluation import DatasetItem, EvalStore
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def _seed(url: str, traces: int = 40) -> None:
    spans: list[Any] = []
    scores, samples = [], []
    for i in range(traces):
        trace = three_level_trace(T0 + i * S, session_id=f"s{i % 3}", error=i % 7 == 0)
        trace[0].inputs = {"q": f"ünïcode {i}", "nested": [1, {"a": None}]}
        spans += trace
        scores.append(Score("thumbs", "feedback", trace[0].trace_id, value=1.0, created_ns=T0 + i))
        samples.append(Sample("gpu_util", float(i), time_ns=T0 + i * S, labels={"gpu": str(i % 2)}))
    alert = Alert(rule="error_rate", state="firing", severity="warning", value=0.5, threshold=0.1,
                  started_ns=T0, summary="errors", labels={"model": "gpt-4o"})
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=spans, scores=scores, samples=samples, alerts=[alert]))
    writer.close()
    EvalStore(url).create_dataset("qa", [DatasetItem({"q": "x"}, "y")])


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = open_engine(url, create=False)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for table in tables():
                skip = NOT_COPIED_COLUMNS.get(table.name, ())
                cols = [c for c in table.columns if c.name not in skip]
                rows = [dict(r._mapping) for r in conn.execute(sa.select(*cols))]
                out[table.name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    finally:
        engine.dispose()
    return out


def test_copy_is_equal_row_for_row(store_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    _seed(source)
    seen: list[tuple[str, int, int]] = []
    counts = copy_store(source, store_url, batch_size=7, progress=lambda *a: seen.append(a))
    by_table = {c.table: c for c in counts}
    assert by_table["spans"].destination == 160 and by_table["traces"].destination == 40
    assert by_table["samples"].destination == 40 and by_table["alerts"].destination == 1
    assert by_table["dataset_items"].destination == 1
    assert all(c.ok for c in counts)
    assert seen[-1][1] == seen[-1][2] == sum(c.source for c in counts)
    expected, copied = _rows(source), _rows(store_url)
    assert set(expected) == set(copied) and "leases" not in copied
    for name in expected:
        assert copied[name] == expected[name], name
    # the destination is a working store: it takes new rows (its own sample ids too)
    _seed(store_url, traces=2)


def test_copy_reads_one_snapshot_while_the_source_is_written(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    target = f"sqlite:///{tmp_path / 'target.db'}"
    _seed(source, traces=200)
    stop = threading.Event()

    def keep_writing() -> None:
        writer = StoreWriter(source)
        i = 0
        while not stop.is_set():
            writer.write(WriteBatch(spans=three_level_trace(T0 + (1000 + i) * S)))
            i += 1
        writer.close()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        counts = copy_store(source, target, batch_size=50)
    finally:
        stop.set()
        thread.join(30)
    by_table = {c.table: c.destination for c in counts}
    assert all(c.ok for c in counts)
    assert by_table["spans"] == 4 * by_table["traces"]  # no half-copied trace


def test_a_store_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    target = f"sqlite:///{tmp_path / 'b.db'}"
    _seed(source, traces=2)
    _seed(target, traces=1)
    with pytest.raises(CopyError, match=r"b\.db is not empty \(it has rows in"):
        copy_store(source, target)
    with pytest.raises(CopyError, match="same store"):
        copy_store(source, source)


def test_cli_db_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    source = f"sqlite:///{tmp_path / 'a.db'}"
    target = f"sqlite:///{tmp_path / 'b.db'}"
    _seed(source, traces=3)
    assert main(["db", "copy", "--db", source, "--to", target]) == 0
    out = capsys.readouterr().out
    assert "count check" in out and "spans" in out and "12" in out
    assert main(["db", "copy", "--db", source, "--to", target, "--json"]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert schema.spans.name == "spans"
