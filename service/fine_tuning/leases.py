"""The transitions a trainer worker makes while it holds a job (see the package docstring).

Every one is guarded by `Lease.held()`: this worker's id and an unexpired lease on the
database's clock. A transition that lost wrote nothing, and the worker must stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import File, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent
from service.fine_tuning.clock import db_now
from service.fine_tuning.events import guarded_update, job_event
from service.ids import now_s
from service.webhooks import outbox


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one job.

    Example:
        >>> Lease("ftjob-1", "host:42:ab", lease_s=30).worker_id
        'host:42:ab'
    """

    job_id: str
    worker_id: str
    lease_s: int
    """How long a renewal holds the job; renewals come every second."""

    def held(self) -> Any:
        """The SQL condition that this worker still holds the job."""
        return (
            (FineTuningJob.id == self.job_id)
            & (FineTuningJob.worker_id == self.worker_id)
            & (FineTuningJob.lease_expires_at > db_now())
        )


async def claim(session: AsyncSession, lease: Lease) -> FineTuningJob | None:
    """queued (or running under a lapsed lease) → running, held by `lease`; None if not ours to run."""
    started_at = await session.scalar(select(FineTuningJob.started_at).where(FineTuningJob.id == lease.job_id))
    events = [job_event(lease.job_id, "Fine-tuning job started")] if started_at is None else []
    won = await guarded_update(
        session,
        (FineTuningJob.id == lease.job_id)
        & FineTuningJob.status.in_(("queued", "running"))
        & (FineTuningJob.worker_id.is_(None) | FineTuningJob.lease_expires_at.is_(None)
           | (FineTuningJob.lease_expires_at <= db_now())),
        events=events, status="running", worker_id=lease.worker_id, lease_expires_at=db_now() + lease.lease_s,
        started_at=func.coalesce(FineTuningJob.started_at, now_s()),
    )  # fmt: skip
    await session.commit()
    if not won:
        return None
    return await session.scalar(select(FineTuningJob).where(FineTuningJob.id == lease.job_id))


async def renew(session: AsyncSession, lease: Lease) -> str | None:
    """Extend the lease; the job's status (to see a cancel or a pause), or None once the lease is lost."""
    won = await guarded_update(session, lease.held(), lease_expires_at=db_now() + lease.lease_s)
    status = await session.scalar(select(FineTuningJob.status).where(FineTuningJob.id == lease.job_id)) if won else None
    await session.commit()
    return status


async def report(
    session: AsyncSession, lease: Lease, events: list[FineTuningJobEvent], *, estimated_finish: int | None = None
) -> bool:
    """Append the worker's events. A `metrics` event for step n replaces the job's metrics events of
    steps n and later, which an earlier attempt reported before it lost the job: each step once."""
    values: dict[str, Any] = {"estimated_finish": estimated_finish} if estimated_finish is not None else {}
    won = await guarded_update(session, lease.held(), events=events, **values)
    steps = [e.step for e in events if e.type == "metrics" and e.step is not None]
    if won and steps:
        await session.execute(delete(FineTuningJobEvent).where(
            FineTuningJobEvent.job_id == lease.job_id, FineTuningJobEvent.type == "metrics",
            FineTuningJobEvent.step >= min(steps), FineTuningJobEvent.id.not_in([e.id for e in events]),
        ))  # fmt: skip
    await session.commit()
    return won


async def record_checkpoint(
    session: AsyncSession, lease: Lease, checkpoint: FineTuningJobCheckpoint, *, keep: int
) -> list[str] | None:
    """Record a checkpoint whose bytes are stored, keep the newest `keep`; the storage prefixes of
    those dropped (to delete after the commit: rows first, then bytes), or None if the lease is lost."""
    event = job_event(lease.job_id, f"Checkpoint created at step {checkpoint.step_number}")
    won = await guarded_update(
        session, lease.held(), events=[event], resume_checkpoint=checkpoint.storage_prefix, lapsed_restarts=0
    )  # progress: earlier lost workers no longer count
    if not won:
        await session.commit()
        return None
    await session.execute(delete(FineTuningJobCheckpoint).where(
        FineTuningJobCheckpoint.fine_tuned_model_checkpoint == checkpoint.fine_tuned_model_checkpoint
    ))  # fmt: skip
    session.add(checkpoint)
    await session.flush()
    rows = list(await session.scalars(
        select(FineTuningJobCheckpoint).where(FineTuningJobCheckpoint.job_id == lease.job_id)
        .order_by(FineTuningJobCheckpoint.step_number.desc())
    ))  # fmt: skip
    stale = rows[keep:]
    if stale:
        await session.execute(delete(FineTuningJobCheckpoint).where(
            FineTuningJobCheckpoint.seq.in_([r.seq for r in stale])
        ))  # fmt: skip
    await session.commit()
    return [r.storage_prefix for r in stale]


async def succeed(
    session: AsyncSession, lease: Lease, *, fine_tuned_model: str, trained_tokens: int, result_file: File
) -> bool:
    """running → succeeded with the stored adapter's model name and the result file (its bytes stored)."""
    events = [
        job_event(lease.job_id, f"New fine-tuned model created: {fine_tuned_model}"),
        job_event(lease.job_id, "The job has successfully completed"),
    ]
    won = await guarded_update(
        session, lease.held() & (FineTuningJob.status == "running"), events=events,
        status="succeeded", finished_at=now_s(), fine_tuned_model=fine_tuned_model, trained_tokens=trained_tokens,
        result_files=[result_file.id], worker_id=None, lease_expires_at=None, estimated_finish=None,
    )  # fmt: skip
    if won:
        session.add(result_file)
        await outbox.record_job(session, "fine_tuning.job.succeeded", lease.job_id)
    await session.commit()
    return won


async def fail(session: AsyncSession, lease: Lease, error: dict[str, Any]) -> bool:
    """running → failed, `error` being `{"code", "message", "param"}`."""
    won = await guarded_update(
        session, lease.held() & (FineTuningJob.status == "running"),
        events=[job_event(lease.job_id, error["message"], level="error")],
        status="failed", finished_at=now_s(), error=error, worker_id=None, lease_expires_at=None,
        estimated_finish=None,
    )  # fmt: skip
    if won:
        await outbox.record_job(session, "fine_tuning.job.failed", lease.job_id)
    await session.commit()
    return won


async def stop(
    session: AsyncSession,
    lease: Lease,
    *,
    reason: Literal["pause", "requeue"],
    step: int,
    total_steps: int,
    resume_prefix: str | None,
) -> bool:
    """Let go of a job whose training state was saved at `step`.

    A shutdown (`requeue`) sends a running job back to `queued`. A job the user paused stays
    `paused` (or `queued`, if resumed meanwhile), now free for the next worker.
    """
    saved = {"resume_checkpoint": resume_prefix} if resume_prefix else {}
    released = {"worker_id": None, "lease_expires_at": None, "estimated_finish": None, **saved}
    requeued = job_event(lease.job_id, f"The trainer is shutting down; the job saved step {step} and is queued again.")
    if reason == "requeue" and await guarded_update(
        session, lease.held() & (FineTuningJob.status == "running"), events=[requeued], status="queued", **released
    ):
        await session.commit()
        return True
    paused = job_event(lease.job_id, f"Job paused at step {step}/{total_steps}")
    won = await guarded_update(
        session, lease.held() & FineTuningJob.status.in_(("paused", "queued")), events=[paused], **released
    )
    await session.commit()
    return won


async def release(session: AsyncSession, lease: Lease) -> bool:
    """Let go of a job that reached a final state while held (a cancel): nothing else changes."""
    won = await guarded_update(session, lease.held(), worker_id=None, lease_expires_at=None, estimated_finish=None)
    await session.commit()
    return won
