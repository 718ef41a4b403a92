"""Helpers for plugin tests that run a real Observer on SQLite: read every row back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from chainsight.storage import schema


def all_text_rows(url: str) -> list[tuple[str, str, str]]:
    """(table, column, text) for every non-null text or JSON value of every table."""
    engine = sa.create_engine(url)
    out: list[tuple[str, str, str]] = []
    try:
        with engine.connect() as conn:
            for table in schema.metadata.sorted_tables:
                names = {t for t in sa.inspect(conn).get_table_names()}
                if table.name not in names:
                    continue
                for row in conn.execute(sa.text(f'SELECT * FROM "{table.name}"')).mappings():
                    for column, value in row.items():
                        if isinstance(value, str | bytes):
                            out.append((table.name, column, value if isinstance(value, str) else value.decode()))
    finally:
        engine.dispose()
    return out


def rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings()]
    finally:
        engine.dispose()


def score_rows(url: str) -> list[dict[str, Any]]:
    """Every score, as a dict of the ``scores`` columns, read through the query
    API: score rows and the passing check verdicts stored on their spans."""
    import dataclasses

    from chainsight.storage.query import Store

    with Store(url, create=False) as store:
        return [dataclasses.asdict(s) for s in store.list_scores(limit=1_000_000)]
