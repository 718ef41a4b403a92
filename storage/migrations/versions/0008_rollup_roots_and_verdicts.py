"""span rollups keep root spans apart and sum the passing check verdicts

The whole-trace metrics (the metrics screen, ``chainsight run``'s summary)
and the quality panel's pass rates read the rollups instead of every trace
row and every span's verdicts: ``root`` joins the key (1 for spans without a
parent) and ``checks`` sums each check's verdicts.

The table is made again: from the spans for each period (minute, hour, day)
from the one that holds the oldest stored span on, and for the periods
before it (spans pruned, rollups kept as history) the old rows as they were,
with ``root`` 0 and no verdicts (what was pruned cannot be split by root: the
whole-trace figures there were read from trace rows, which prune deleted,
so those periods had none before either). The downgrade adds the roots back
into 0007's key. The fill runs today's ``storage.rollups``: a later
migration that changes ``span_rollups`` takes the fill over from this one
(as this one took it from 0007); tests/storage/test_old_store.py runs the
whole chain on an old store and fails if it does not.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:00:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import op

from chainsight.storage import rollups

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(*, today: bool) -> None:
    key = ['period_s', 'start_ns', 'kind', *(['root'] if today else []), 'model', 'provider', 'status']
    op.create_table(
        'span_rollups',
        sa.Column('period_s', sa.Integer(), nullable=False),
        sa.Column('start_ns', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        *([sa.Column('root', sa.Integer(), nullable=False)] if today else []),
        sa.Column('model', sa.Text(), nullable=False),
        sa.Column('provider', sa.Text(), nullable=False),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('input_tokens', sa.BigInteger(), nullable=False),
        sa.Column('output_tokens', sa.BigInteger(), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=True),
        sa.Column('unpriced', sa.BigInteger(), nullable=False),
        sa.Column('latency', sa.Text(), nullable=False),
        sa.Column('ttft', sa.Text(), nullable=False),
        sa.Column('tpot', sa.Text(), nullable=False),
        *([sa.Column('checks', sa.Text(), nullable=False)] if today else []),
        sa.PrimaryKeyConstraint(*key, name=op.f('pk_span_rollups')),
        sqlite_with_rowid=False,
    )


OLD: Final = "span_rollups_0007"
OLD_KEY: Final = ("period_s", "start_ns", "kind", "model", "provider", "status")
SUMS: Final = ("count", "input_tokens", "output_tokens", "cost_usd", "unpriced", "latency", "ttft", "tpot")


def upgrade() -> None:
    conn = op.get_bind()
    op.rename_table('span_rollups', OLD)
    if conn.dialect.name == "postgresql":  # constraint names are the schema's, not the table's
        op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_span_rollups TO pk_{OLD}")
    _create(today=True)
    rollups.rebuild(conn)
    oldest = conn.execute(sa.text("SELECT min(start_ns) FROM spans")).scalar()
    columns = ", ".join((*OLD_KEY, *SUMS))
    for period in rollups.PERIODS:
        width = period * 10**9
        # The periods before the one holding the oldest span: no span left in them.
        before = "" if oldest is None else f" AND start_ns < {oldest // width * width}"
        conn.execute(sa.text(
            f"INSERT INTO span_rollups ({columns}, root, checks) "
            f"SELECT {columns}, 0, '{{}}' FROM {OLD} WHERE period_s = {period}{before}"))
    op.drop_table(OLD)


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT * FROM span_rollups")).mappings().all()
    merged: dict[tuple[object, ...], rollups.Rollup] = {}
    for m in rows:
        key = tuple(m[k] for k in OLD_KEY)
        acc = rollups.Rollup(count=int(m["count"]), input_tokens=int(m["input_tokens"]),
                             output_tokens=int(m["output_tokens"]), cost_usd=m["cost_usd"],
                             unpriced=int(m["unpriced"]),
                             hists={s: json.loads(m[s]) for s in rollups.SPREADS})
        if key in merged:
            merged[key].merge(acc)
        else:
            merged[key] = acc
    op.drop_table('span_rollups')
    _create(today=False)
    old = [{**dict(zip(OLD_KEY, key, strict=True)), "count": acc.count, "input_tokens": acc.input_tokens,
            "output_tokens": acc.output_tokens, "cost_usd": acc.cost_usd, "unpriced": acc.unpriced,
            **{s: json.dumps(acc.hists[s], separators=(",", ":")) for s in rollups.SPREADS}}
           for key, acc in merged.items()]
    if old:
        table = sa.table('span_rollups', *[sa.column(c) for c in (*OLD_KEY, *SUMS)])
        conn.execute(table.insert(), old)
