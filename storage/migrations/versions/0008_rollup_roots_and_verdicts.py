"""span rollups keep root spans apart and sum the passing check verdicts

The whole-trace metrics (the metrics screen, ``chainsight run``'s summary)
and the quality panel's pass rates read the rollups instead of every trace
row and every span's verdicts: ``root`` joins the key (1 for spans without a
parent) and ``checks`` sums each check's verdicts. Rollups are derived data,
so the table is made again and filled from the spans. The downgrade makes
0007's table again and leaves it empty (``chainsight db rebuild-rollups``
fills it with a Chainsight of that schema).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

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


def upgrade() -> None:
    op.drop_table('span_rollups')
    _create(today=True)
    # The spans' columns the rollups read have not changed since 0006 (checks).
    rollups.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table('span_rollups')
    _create(today=False)
