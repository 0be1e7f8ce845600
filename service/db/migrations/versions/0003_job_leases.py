"""job leases: which worker holds a job, until when, and how far it got

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("started_at", sa.BigInteger(), nullable=True))
        batch.create_index("ix_fine_tuning_jobs_lease", ["status", "lease_expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.drop_index("ix_fine_tuning_jobs_lease")
        batch.drop_column("started_at")
        batch.drop_column("lease_expires_at")
        batch.drop_column("worker_id")
