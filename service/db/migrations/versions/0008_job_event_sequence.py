"""job events are numbered per job (`job_seq`), in the transaction that writes them

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 11:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.add_column(sa.Column("events_written", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("fine_tuning_job_events") as batch:
        batch.add_column(sa.Column("job_seq", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_fine_tuning_job_events_job_id_job_seq", ["job_id", "job_seq"])
    # Number the events already written, in the order they were written.
    events = sa.table("fine_tuning_job_events", sa.column("seq", sa.Integer), sa.column("job_id", sa.String),
                      sa.column("job_seq", sa.Integer))  # fmt: skip
    numbered = sa.select(
        events.c.seq, sa.func.row_number().over(partition_by=events.c.job_id, order_by=events.c.seq).label("n")
    ).subquery()
    op.execute(events.update().values(
        job_seq=sa.select(numbered.c.n).where(numbered.c.seq == events.c.seq).scalar_subquery()
    ))  # fmt: skip
    jobs = sa.table("fine_tuning_jobs", sa.column("id", sa.String), sa.column("events_written", sa.Integer))
    op.execute(jobs.update().values(
        events_written=sa.select(sa.func.coalesce(sa.func.max(events.c.job_seq), 0))
        .where(events.c.job_id == jobs.c.id).scalar_subquery()
    ))  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_events") as batch:
        batch.drop_constraint("uq_fine_tuning_job_events_job_id_job_seq", type_="unique")
        batch.drop_column("job_seq")
    with op.batch_alter_table("fine_tuning_jobs") as batch:
        batch.drop_column("events_written")
