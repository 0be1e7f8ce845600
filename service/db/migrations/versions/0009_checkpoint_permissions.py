"""fine-tuning from a fine-tuned model (`source_adapter`) and checkpoint permissions

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.add_column(sa.Column("source_adapter", sa.Text(), nullable=True))
    op.create_table(
        "checkpoint_permissions",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "organization_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("model_id", sa.String(512), nullable=False, index=True),
        sa.Column(
            "grantee_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("model_id", "grantee_id", name="uq_checkpoint_permissions_model_grantee"),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_permissions")
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.drop_column("source_adapter")
