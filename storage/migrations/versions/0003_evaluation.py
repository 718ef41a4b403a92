"""evaluation: dataset versions, per-item scores of an experiment

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Text(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_datasets_name'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_datasets_name_version'), ['name', 'version'])

    with op.batch_alter_table('experiment_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scores', sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), 'postgresql'), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('experiment_results', schema=None) as batch_op:
        batch_op.drop_column('scores')

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_datasets_name_version'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_datasets_name'), ['name'])
        batch_op.drop_column('version')
