"""insertion sequence and follower cursors (chainsight serve)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:40:00

A reader that follows the store (``chainsight serve``) needs the order rows
were inserted in, not their ids: ids are only roughly time-ordered across
processes. SQLite serializes its writers, so the rowid of ``spans`` and
``scores`` (tables with a text primary key keep one) is already in commit
order and nothing is added there. PostgreSQL gets a ``seq`` column on both,
filled from one sequence by a column default (existing rows are numbered
when the column is added), and an index on it; concurrent transactions
commit out of order, which the follower covers with a safety window
(``chainsight.storage.follow``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEQUENCE = "chainsight_seq"


def upgrade() -> None:
    op.create_table('followers',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('position', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('updated_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_followers'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS BIGINT")
        for table in ("spans", "scores"):
            op.execute(f"ALTER TABLE {table} ADD COLUMN seq BIGINT NOT NULL DEFAULT nextval('{SEQUENCE}')")
            op.execute(f"CREATE INDEX ix_{table}_seq ON {table} (seq)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("spans", "scores"):
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_seq")
            op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS seq")
        op.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")
    op.drop_table('followers')
