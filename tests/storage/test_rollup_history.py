"""Rollups are the metrics' history: they outlive pruned spans, through the
upgrade that remade their table (0008) and back down to 0007's key."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from test_rollups import T0, llm_spans, verdicts

from chainsight.storage import schema
from chainsight.storage.engine import alembic_config, create, head_revision, upgrade
from chainsight.storage.query import Store
from chainsight.storage.retention import prune
from chainsight.storage.writer import StoreWriter, WriteBatch

DAY = 86_400 * 10**9
CUT = T0 - T0 % DAY + DAY  # the first midnight after the spans begin


def migrate(url: str, revision: str) -> None:
    from alembic import command

    engine = create(url)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        if revision < head_revision():
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
    engine.dispose()


def by_model(url: str) -> list[Any]:
    with Store(url) as store:
        return store.aggregates(group_by="model")


def rollup_totals(url: str) -> dict[int, int]:
    engine = create(url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT period_s, sum(count) FROM span_rollups GROUP BY period_s"))
        totals = {int(p): int(n) for p, n in found}
    engine.dispose()
    return totals


def test_history_outlives_a_prune_and_the_upgrade_to_0008(store_url: str) -> None:
    spans = llm_spans(900, seed=11, minutes=3 * 1440)  # three days, the first cut off below
    StoreWriter(store_url).write(WriteBatch(spans=spans))
    before = by_model(store_url)
    # the store as 0007 kept it, then pruned there: spans and traces gone, rollups kept
    migrate(store_url, "0007")
    assert rollup_totals(store_url) == {60: len(spans), 3600: len(spans), 86400: len(spans)}
    engine = create(store_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(schema.spans).where(schema.spans.c.start_ns < CUT))
        conn.execute(sa.delete(schema.traces).where(schema.traces.c.start_ns < CUT))
    engine.dispose()
    assert upgrade(store_url) == head_revision()
    assert by_model(store_url) == before  # the same rows: exactly, percentiles too
    with Store(store_url) as store:
        (kept,) = store.aggregates(since_ns=CUT)  # whole traces where the spans are
    assert kept.count == sum(1 for s in spans if s.parent_id is None and s.start_ns >= CUT)


def test_prune_keeps_the_history_and_the_pass_rates_stay_true(store_url: str) -> None:
    spans = llm_spans(600, seed=12, minutes=2 * 1440)
    StoreWriter(store_url).write(WriteBatch(spans=spans, scores=verdicts(spans, seed=12)))
    before = by_model(store_url)
    prune(store_url, CUT)
    assert by_model(store_url) == before
    with Store(store_url) as store:
        # passes (rollups, kept) and failures (score rows, pruned) over the same spans
        got = {(s.name, s.count, s.passed) for s in store.score_stats()}
        want = {(s.name, s.count, s.passed) for s in store.score_stats(from_spans=True)}
    assert got == want


def test_downgrade_to_0007_adds_the_roots_back(sqlite_url: str) -> None:
    spans = llm_spans(300, seed=13, minutes=90)
    StoreWriter(sqlite_url).write(WriteBatch(spans=spans))
    before = by_model(sqlite_url)
    migrate(sqlite_url, "0007")
    assert rollup_totals(sqlite_url) == {60: len(spans), 3600: len(spans), 86400: len(spans)}
    engine = create(sqlite_url)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("span_rollups")}
    engine.dispose()
    assert "root" not in columns and "checks" not in columns
    assert upgrade(sqlite_url) == head_revision()
    assert by_model(sqlite_url) == before

