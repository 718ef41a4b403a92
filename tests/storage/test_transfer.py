"""Export and import: a JSONL round trip gives the same traces, spans and
scores; importing twice stores once; CSV has one row per trace."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from storage_builders import three_level_trace

from chainsight.framework.cli import main
from chainsight.framework.model import Score
from chainsight.storage.query import Store, TraceFilter
from chainsight.storage.transfer import (
    RecordError,
    import_jsonl,
    iter_traces,
    write_csv,
    write_jsonl,
)
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def _seed(url: str) -> list[str]:
    spans, scores, ids = [], [], []
    for i in range(7):
        trace = three_level_trace(T0 + i * S, session_id=f"s{i % 2}", error=i == 3,
                                  cost=None if i == 5 else 0.001 * (i + 1))
        trace[0].inputs = {"question": f"ünïcode [bold]{i}[/] \u2028 \"quoted\"", "n": [1, 2.5, None]}
        trace[3].attributes = {"temperature": 0.2, "nested": {"k": [True, False]}}
        spans += trace
        ids.append(trace[0].trace_id)
        scores += [Score("pii", "check", trace[0].trace_id, span_id=trace[3].span_id, value=0.0,
                         passed=True, created_ns=T0 + i * S + 5),
                   Score("thumbs", "feedback", trace[0].trace_id, value=-1.0, comment="meh",
                         created_ns=T0 + i * S + 6)]
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=spans, scores=scores))
    writer.close()
    return ids


def _everything(url: str) -> list[tuple[object, list[dict[str, object]], list[Score]]]:
    with Store(url, create=False) as store:
        return [(d.trace, [s.to_dict() for s in d.spans], list(d.scores))
                for d in iter_traces(store, page=3)]


def test_jsonl_round_trip_is_equal_and_import_is_idempotent(store_url: str, tmp_path: Path) -> None:
    ids = _seed(store_url)
    out = io.StringIO()
    with Store(store_url, create=False) as store:
        assert write_jsonl(iter_traces(store, page=2), out) == 7  # several pages
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["trace"]["trace_id"] for line in lines] == ids  # oldest first
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    first = import_jsonl(target, lines)
    assert (first.traces, first.spans, first.scores, first.rejected) == (7, 28, 14, 0)
    original = _everything(store_url)
    assert _everything(target) == original
    again = import_jsonl(target, lines)
    assert again.rejected == 0
    assert _everything(target) == original  # nothing doubled


def test_export_follows_the_filter(store_url: str) -> None:
    _seed(store_url)
    with Store(store_url, create=False) as store:
        out = io.StringIO()
        assert write_jsonl(iter_traces(store, TraceFilter(session_id="s1")), out) == 3
        rows = io.StringIO()
        assert write_csv(iter_traces(store, TraceFilter(status="error")), rows) == 1
    table = list(csv.DictReader(io.StringIO(rows.getvalue())))
    assert len(table) == 1 and table[0]["status"] == "error" and table[0]["error"] == "boom"
    assert json.loads(table[0]["input"])["question"].startswith("ünïcode [bold]3[/]")


def test_a_bad_line_is_named_and_the_lines_before_it_are_stored(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'a.db'}"
    _seed(source)
    out = io.StringIO()
    with Store(source, create=False) as store:
        write_jsonl(iter_traces(store), out)
    lines = [*out.getvalue().splitlines()[:2], '{"spans": []}']
    target = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(RecordError, match=r"f\.jsonl, line 3: not a Chainsight trace record"):
        import_jsonl(target, lines, source="f.jsonl")
    with Store(target, create=False) as store:
        assert store.count_traces() == 2


def test_cli_export_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _seed(source)
    dump = tmp_path / "traces.jsonl"
    assert main(["export", "traces", "--db", source, "-o", str(dump)]) == 0
    assert "exported 7 traces" in capsys.readouterr().err
    for _ in range(2):
        assert main(["import", str(dump), "--db", target]) == 0
        assert "imported 7 traces (28 spans, 14 scores)" in capsys.readouterr().out
    assert _everything(target) == _everything(source)
    assert main(["export", "traces", "session:s0", "--format", "csv", "--db", source]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and {r["session_id"] for r in rows} == {"s0"}
    (tmp_path / "bad.jsonl").write_text("not json\n")
    assert main(["import", str(tmp_path / "bad.jsonl"), "--db", target]) == 1
    assert "bad.jsonl, line 1: not JSON" in capsys.readouterr().err


def test_parquet_has_the_csv_rows_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from chainsight.storage import transfer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(transfer, "PARQUET_ROW_GROUP", 3)  # several row groups
    source = f"sqlite:///{tmp_path / 'a.db'}"
    ids = _seed(source)
    out = tmp_path / "traces.parquet"
    assert main(["export", "traces", "--format", "parquet", "-o", str(out), "--db", source]) == 0
    table = pq.read_table(out)
    assert pq.ParquetFile(out).num_row_groups == 3
    rows = table.to_pylist()
    assert [r["trace_id"] for r in rows] == ids
    assert table.schema.field("start_ns").type == "int64" and rows[0]["start_ns"] == T0
    assert rows[0]["cost_usd"] == pytest.approx(0.001) and rows[5]["cost_usd"] is None
    assert json.loads(rows[3]["input"])["question"].startswith("ünïcode [bold]3[/]")
    assert rows[3]["status"] == "error" and rows[3]["error"] == "boom"
    capsys.readouterr()
    assert main(["export", "traces", "--format", "parquet", "--db", source]) == 1
    assert "--output FILE" in capsys.readouterr().err
