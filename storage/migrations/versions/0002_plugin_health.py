"""plugin health

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:51:28.807876
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('plugin_health',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('consecutive', sa.Integer(), nullable=False),
    sa.Column('slow', sa.BigInteger(), nullable=False),
    sa.Column('degraded', sa.Boolean(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_plugin_health'))
    )


def downgrade() -> None:
    op.drop_table('plugin_health')
