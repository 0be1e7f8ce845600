"""count the restarts of jobs and eval runs that lost their worker (`lapsed_restarts`)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("fine_tuning_jobs", "eval_runs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("lapsed_restarts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in ("fine_tuning_jobs", "eval_runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lapsed_restarts")
