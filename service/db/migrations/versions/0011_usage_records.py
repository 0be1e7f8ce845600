"""tokens served per organisation, model and minute (`usage_records`)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "organization_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_cached_tokens", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_usage_records_org_minute", "usage_records", ["organization_id", "minute"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_org_minute", table_name="usage_records")
    op.drop_table("usage_records")
