from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from chainsight.storage import schema
from chainsight.storage.engine import head_revision, open_engine, upgrade


def test_upgrade_creates_every_table_and_is_idempotent(store_url: str) -> None:
    assert upgrade(store_url) == head_revision()
    assert upgrade(store_url) == head_revision()
    engine = open_engine(store_url)
    names = set(sa.inspect(engine).get_table_names())
    assert set(schema.metadata.tables) | {"alembic_version"} <= names
    postgres = engine.dialect.name == "postgresql"
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        if postgres and table.name in schema.SEQUENCED_TABLES:  # the insertion sequence
            columns.discard(schema.SEQUENCE_COLUMN)
        assert columns == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_migrations_match_the_schema(sqlite_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_settings(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        pragma = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                  for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    engine.dispose()
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 0,
                      "busy_timeout": 2000}


def test_schema_head_constant_matches_the_migrations() -> None:
    from chainsight.storage.engine import SCHEMA_HEAD, head_revision

    assert head_revision() == SCHEMA_HEAD, "update storage.engine.SCHEMA_HEAD with the new migration"


def test_opening_a_store_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'at_head.db'}"
    upgrade(url)
    code = (
        "import sys\n"
        "from chainsight.storage.query import Store\n"
        f"Store({url!r}).list_traces(limit=1)\n"
        "print('alembic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
