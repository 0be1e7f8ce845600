"""fine-tuning jobs, events and checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 22:40:26.804215
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("base_model", sa.String(length=256), nullable=False),
        sa.Column("training_file", sa.String(length=64), nullable=False),
        sa.Column("validation_file", sa.String(length=64), nullable=True),
        sa.Column("suffix", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("integrations", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("requested_action", sa.String(length=16), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("fine_tuned_model", sa.String(length=512), nullable=True),
        sa.Column("trained_tokens", sa.BigInteger(), nullable=True),
        sa.Column("result_files", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("estimated_finish", sa.BigInteger(), nullable=True),
        sa.Column("resume_checkpoint", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("organization_id", "idempotency_key"),
    )
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fine_tuning_jobs_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fine_tuning_jobs_status"), ["status"], unique=False)

    op.create_table(
        "fine_tuning_job_checkpoints",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.String(length=512), nullable=False),
        sa.Column("step_number", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("storage_prefix", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["fine_tuning_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("fine_tuned_model_checkpoint"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fine_tuning_job_checkpoints_job_id"), ["job_id"], unique=False)

    op.create_table(
        "fine_tuning_job_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["fine_tuning_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("fine_tuning_job_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fine_tuning_job_events_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_job_events_job_id"))

    op.drop_table("fine_tuning_job_events")
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_job_checkpoints_job_id"))

    op.drop_table("fine_tuning_job_checkpoints")
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_fine_tuning_jobs_organization_id"))

    op.drop_table("fine_tuning_jobs")
