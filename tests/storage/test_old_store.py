"""A store written by schema 0002's code, upgraded by today's: nothing lost.

``data/store_0002.db.gz`` was written by commit 159cc8d (the demo workload,
feedback, a trace-level check, an evaluation, a passing check recorded on its
own) and ``data/answers_0002.json.gz`` holds what that commit's readers
answered about it (see data/make_old_store.py). Upgraded (migration 0006
moves passing check scores onto their spans and stores repeated content once),
today's readers must give the same answers, on SQLite and, with the same rows
loaded at revision 0002, on PostgreSQL.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from storage_builders import assert_same, plain

from chainsight.storage import schema
from chainsight.storage.cost import cost_report
from chainsight.storage.engine import alembic_config, create, head_revision, upgrade
from chainsight.storage.quality import quality_by_model, quality_metrics, quality_over_time
from chainsight.storage.query import Store

DATA = Path(__file__).parent / "data"
OLD_TABLES = ("traces", "spans", "scores", "samples", "alerts", "plugin_health")


@pytest.fixture(scope="module")
def old_answers() -> dict[str, Any]:
    with gzip.open(DATA / "answers_0002.json.gz", "rt", encoding="utf-8") as fh:
        answers: dict[str, Any] = json.load(fh)
    return answers


def old_sqlite_store(folder: Path) -> Path:
    db = folder / "old.db"
    with gzip.open(DATA / "store_0002.db.gz", "rb") as src, open(db, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return db


def old_postgres_store(url: str, folder: Path) -> None:
    """The fixture's rows in a PostgreSQL schema at revision 0002."""
    from alembic import command

    engine = create(url)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    source = sa.create_engine(f"sqlite:///{old_sqlite_store(folder)}")
    with source.connect() as src, engine.begin() as dst:
        for name in OLD_TABLES:
            old = sa.Table(name, sa.MetaData(), autoload_with=src)
            new = sa.Table(name, sa.MetaData(), autoload_with=dst)
            rows = [dict(r._mapping) for r in src.execute(sa.select(old))]
            for row in rows:
                for column in new.columns:
                    if isinstance(column.type, sa.Boolean) and row[column.name] is not None:
                        row[column.name] = bool(row[column.name])
            if rows:
                dst.execute(new.insert(), rows)
    source.dispose()
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of the old store, not yet upgraded (opening it upgrades it)."""
    if request.param == "sqlite":
        return f"sqlite:///{old_sqlite_store(tmp_path)}"
    url: str = request.getfixturevalue("postgres_url")
    old_postgres_store(url, tmp_path)
    return url


def compacted(score: dict[str, Any]) -> bool:
    return score["source"] == "check" and score["passed"] is True and score["experiment_id"] is None \
        and score["span_id"] is not None


def same_scores(got: list[dict[str, Any]], want: list[dict[str, Any]], where: str) -> None:
    """The same scores in the same order; a verdict moved onto its span has a new id."""
    assert len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if compacted(w):
            assert g["score_id"] == f"{w['span_id']}:{g['score_id'].rsplit(':', 1)[1]}", (where, i)
            g, w = {**g, "score_id": ""}, {**w, "score_id": ""}
        assert_same(g, w, f"{where}[{i}]")


def test_an_old_store_reads_as_it_did(upgraded: str, old_answers: dict[str, Any]) -> None:
    with Store(upgraded) as store:
        page = store.list_traces(limit=1000)
        assert_same([plain(t) for t in page.items], old_answers["traces"], "traces")
        for trace_id, want in old_answers["details"].items():
            detail = store.get_trace(trace_id)
            assert detail is not None
            assert_same(plain(detail.trace), want["trace"], f"{trace_id}.trace")
            assert_same([plain(s.to_dict()) for s in detail.spans], want["spans"], f"{trace_id}.spans")
            same_scores([plain(s) for s in detail.scores], want["scores"], f"{trace_id}.scores")
        for trace_id, want in old_answers["list_scores"].items():
            same_scores([plain(s) for s in store.list_scores(trace_id=trace_id)], want, trace_id)
        assert_same([plain(r) for r in store.aggregates(from_spans=True)], old_answers["aggregates"],
                    "aggregates")
        # From the rollups the upgrade filled: counts and sums the same, latency within 2%;
        # TTFT and TPOT are every model call's there, not each trace's first.
        whole_traces = ("ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95")
        [(got, want)] = zip([plain(r) for r in store.aggregates()], old_answers["aggregates"], strict=True)
        assert_same({k: v for k, v in got.items() if k not in whole_traces},
                    {k: v for k, v in want.items() if k not in whole_traces}, "aggregates (rollups)", rel=0.02)
        assert_same([plain(r) for r in store.aggregates(group_by="model", from_spans=True)],
                    old_answers["aggregates_by_model"], "aggregates by model")
        # The rollups the upgrade filled give the same, percentiles within 2%.
        assert_same([plain(r) for r in store.aggregates(group_by="model")], old_answers["aggregates_by_model"],
                    "aggregates by model (rollups)", rel=0.02)
        assert_same(cost_report(store.engine, by="model").to_dict(), old_answers["cost_by_model"], "cost")
    assert_same(quality_metrics(upgraded).to_dict(), old_answers["quality"], "quality")
    assert_same({str(k): m.to_dict() for k, m in quality_by_model(upgraded).items()},
         old_answers["quality_by_model"], "quality by model")
    assert_same([[start, m.to_dict()] for start, m in quality_over_time(upgraded, 60)],
         old_answers["quality_over_time"], "quality over time")


def test_the_upgrade_moves_verdicts_and_shares_content(upgraded: str, old_answers: dict[str, Any]) -> None:
    scores = [s for d in old_answers["details"].values() for s in d["scores"]]
    moved = sum(compacted(s) for s in scores)
    assert moved > 100 and len(scores) - moved >= 10  # failed checks, feedback, judges, evals stay rows
    with Store(upgraded) as store, store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.scores)).scalar() \
            == len(scores) - moved
        verdicts = conn.execute(sa.select(schema.spans.c.checks).where(schema.spans.c.checks.is_not(None)))
        assert sum(len(v[0]) for v in verdicts) == moved
        refs = conn.execute(sa.select(sa.func.count()).select_from(schema.spans)
                            .where(schema.spans.c.content_refs.is_not(None))).scalar()
        assert refs and refs > len(old_answers["traces"])  # more than one per trace
        # the late check (recorded after its span was stored) moved too
        late = conn.execute(sa.select(schema.scores.c.score_id)
                            .where(schema.scores.c.name == "late_check")).all()
        assert late == []


def test_the_upgraded_file_is_smaller(tmp_path: Path) -> None:
    db = old_sqlite_store(tmp_path)
    before = db.stat().st_size
    upgrade(f"sqlite:///{db}")
    conn = sqlite3.connect(db)
    # Not the conversion's: the rollups (0007) cost a fixed page or two, a
    # share only of a store as small as this one (196 spans).
    conn.execute("DROP TABLE span_rollups")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    assert db.stat().st_size < 0.8 * before


def test_downgrade_gives_the_old_rows_back(tmp_path: Path) -> None:
    """0006's downgrade restores every row as it was before, verdicts as
    score rows again (with new ids), content in full, the dropped columns."""
    from alembic import command

    (tmp_path / "original").mkdir()
    original = old_sqlite_store(tmp_path / "original")
    db = old_sqlite_store(tmp_path)
    url = f"sqlite:///{db}"
    assert upgrade(url) == head_revision()
    engine = create(url)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
    engine.dispose()

    def rows(path: Path, table: str, key: str) -> dict[Any, dict[str, Any]]:
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        out = {r[key]: dict(r) for r in conn.execute(f"SELECT * FROM {table}")}
        conn.close()
        return out

    for table, key in (("spans", "span_id"), ("traces", "trace_id")):
        want, got = rows(original, table, key), rows(db, table, key)
        assert got.keys() == want.keys()
        for k, row in want.items():
            for column, value in row.items():
                if column in ("inputs", "outputs", "metadata") and value is not None:
                    assert json.loads(got[k][column]) == json.loads(value), (table, k, column)
                elif isinstance(value, float):
                    assert got[k][column] == pytest.approx(value, rel=1e-12), (table, k, column)
                else:
                    assert got[k][column] == value, (table, k, column)

    def without_ids(path: Path) -> list[tuple[Any, ...]]:
        return sorted(tuple(v for c, v in r.items() if c != "score_id")
                      for r in rows(path, "scores", "score_id").values())

    assert without_ids(db) == without_ids(original)
