from __future__ import annotations

import sqlalchemy as sa

from storage import schema
from storage.engine import head_revision, open_engine, upgrade


def test_upgrade_creates_every_table_and_is_idempotent(store_url: str) -> None:
    assert upgrade(store_url) == head_revision()
    assert upgrade(store_url) == head_revision()
    engine = open_engine(store_url)
    names = set(sa.inspect(engine).get_table_names())
    assert set(schema.TABLE_NAMES) | {"alembic_version"} <= names
    for table in schema.metadata.sorted_tables:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
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
