"""fine-tuned models can be deleted

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.add_column(sa.Column("model_deleted_at", sa.BigInteger(), nullable=True))
        batch.create_index("ix_fine_tuning_jobs_fine_tuned_model", ["fine_tuned_model"])


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.drop_index("ix_fine_tuning_jobs_fine_tuned_model")
        batch.drop_column("model_deleted_at")
