"""metrics events carry their step, so that a resumed run can replace the steps it trains again;
jobs keep a hash of the request that created them, to refuse an Idempotency-Key reused with another body

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_events") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.create_index("ix_fine_tuning_job_events_job_id_step", ["job_id", "step"])
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.add_column(sa.Column("idempotency_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.drop_column("idempotency_hash")
    with op.batch_alter_table("fine_tuning_job_events") as batch:
        batch.drop_index("ix_fine_tuning_job_events_job_id_step")
        batch.drop_column("step")
