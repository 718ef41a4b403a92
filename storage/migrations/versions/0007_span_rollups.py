"""span rollups: per-minute, per-hour and per-day metric sums the metric queries read

Creates ``span_rollups`` (chainsight.storage.rollups) as it was first
shipped; 0008 gives it the key and columns of today and fills it from the
spans (the fill used to be here, and would write today's columns into this
table). The downgrade drops it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'span_rollups',
        sa.Column('period_s', sa.Integer(), nullable=False),
        sa.Column('start_ns', sa.BigInteger(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
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
        sa.PrimaryKeyConstraint('period_s', 'start_ns', 'kind', 'model', 'provider', 'status',
                                name=op.f('pk_span_rollups')),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table('span_rollups')
