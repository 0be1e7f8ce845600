"""The transitions that clients, the validator and the reconciler make (see the package docstring).

Each takes a session, issues one guarded statement plus its events, commits, and returns
whether it won. A transition that lost wrote nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import FineTuningJob
from service.fine_tuning import CANCELLABLE_STATUSES
from service.fine_tuning.clock import db_now
from service.fine_tuning.events import guarded_update, job_event
from service.ids import now_s
from service.webhooks import outbox


def _validating(job_id: str, checked: list[tuple[str, str]]) -> list[Any]:
    return [job_event(job_id, f"Validating {param.replace('_', ' ')}: {file_id}") for param, file_id in checked]


async def create(session: AsyncSession, job: FineTuningJob) -> None:
    """Insert a new job (`validating_files`) with its first event. An `IntegrityError` (a raced
    Idempotency-Key) propagates to the caller, which answers with the other request's job."""
    job.events_written = 1
    session.add(job)
    session.add(job_event(job.id, f"Created fine-tuning job: {job.id}", job_seq=1))
    await session.commit()


async def validated(
    session: AsyncSession, job_id: str, *, method: dict[str, Any], checked: list[tuple[str, str]]
) -> bool:
    """validating_files → queued, with the method's `"auto"` values resolved."""
    events = [*_validating(job_id, checked), job_event(job_id, "Files validated, moving job to queued state")]
    won = await guarded_update(
        session, (FineTuningJob.id == job_id) & (FineTuningJob.status == "validating_files"), events=events,
        status="queued", method=method,
    )  # fmt: skip
    await session.commit()
    return won


async def validation_failed(
    session: AsyncSession, job_id: str, error: dict[str, Any], *, checked: list[tuple[str, str]]
) -> bool:
    """validating_files → failed, `error` being `{"code", "message", "param"}`."""
    events = [*_validating(job_id, checked), job_event(job_id, error["message"], level="error")]
    won = await guarded_update(
        session, (FineTuningJob.id == job_id) & (FineTuningJob.status == "validating_files"), events=events,
        status="failed", error=error, finished_at=now_s(),
    )  # fmt: skip
    if won:
        await outbox.record_job(session, "fine_tuning.job.failed", job_id)
    await session.commit()
    return won


def _owned(job_id: str, organization_id: str) -> Any:
    return (FineTuningJob.id == job_id) & (FineTuningJob.organization_id == organization_id)


async def cancel(session: AsyncSession, job_id: str, organization_id: str) -> bool:
    """Any state that is not final → cancelled. A worker holding the job sees it at its next renewal."""
    won = await guarded_update(
        session, _owned(job_id, organization_id) & FineTuningJob.status.in_(CANCELLABLE_STATUSES),
        events=[job_event(job_id, "Job cancelled")], status="cancelled", finished_at=now_s(), estimated_finish=None,
    )  # fmt: skip
    if won:
        await outbox.record(session, organization_id, "fine_tuning.job.cancelled", job_id)
    await session.commit()
    return won


async def pause(session: AsyncSession, job_id: str, organization_id: str) -> bool:
    """queued | running → paused. A running job's worker saves its state, then lets go (`leases.stop`)."""
    won = await guarded_update(
        session, _owned(job_id, organization_id) & FineTuningJob.status.in_(("queued", "running")),
        events=[job_event(job_id, "Job paused")], status="paused",
    )  # fmt: skip
    await session.commit()
    return won


async def resume(session: AsyncSession, job_id: str, organization_id: str) -> bool:
    """paused → queued; training continues from the saved state once no worker holds the job."""
    won = await guarded_update(
        session, _owned(job_id, organization_id) & (FineTuningJob.status == "paused"),
        events=[job_event(job_id, "Job resumed")], status="queued",
    )  # fmt: skip
    await session.commit()
    return won


async def requeue_lapsed(session: AsyncSession, job_id: str, *, max_restarts: int) -> bool:
    """running → queued when the holder's lease lapsed (on the database's clock); running → failed
    instead when the job already lost its worker `max_restarts` times since its last checkpoint
    (a job that kills or hangs every worker that takes it must end, and say so).

    A worker that shuts down or is preempted gracefully hands the job back through `leases.stop`,
    which does not count; a checkpoint resets the count (the job is making progress)."""
    lapsed = (
        (FineTuningJob.id == job_id) & (FineTuningJob.status == "running")
        & (FineTuningJob.lease_expires_at.is_(None) | (FineTuningJob.lease_expires_at <= db_now()))
    )  # fmt: skip
    message = (
        f"The trainer running this job stopped responding {max_restarts + 1} times without reaching a new "
        "checkpoint, so the job was stopped rather than started again. The trainer's log says why (often it "
        "runs out of memory: try a smaller batch_size, a shorter max_seq_len, or a worker with more memory)."
    )
    error = {"code": "trainer_lost", "message": message, "param": None}
    failed = await guarded_update(
        session, lapsed & (FineTuningJob.lapsed_restarts >= max_restarts),
        events=[job_event(job_id, message, level="error")], status="failed", error=error, finished_at=now_s(),
        worker_id=None, lease_expires_at=None, estimated_finish=None,
    )  # fmt: skip
    if failed:
        await outbox.record_job(session, "fine_tuning.job.failed", job_id)
        await session.commit()
        return True
    event = job_event(
        job_id,
        "The trainer running this job stopped responding; the job is queued again and "
        "resumes from its last checkpoint.",
        level="warn",
    )
    won = await guarded_update(
        session, lapsed, events=[event], status="queued", worker_id=None, lease_expires_at=None,
        estimated_finish=None, lapsed_restarts=FineTuningJob.lapsed_restarts + 1,
    )  # fmt: skip
    await session.commit()
    return won


async def mark_model_deleted(session: AsyncSession, job_id: str) -> bool:
    """The tuned model was deleted (`DELETE /v1/models/…`): it stops being served; the job stays."""
    won = await guarded_update(
        session, (FineTuningJob.id == job_id) & FineTuningJob.model_deleted_at.is_(None), model_deleted_at=now_s()
    )
    await session.commit()
    return won
