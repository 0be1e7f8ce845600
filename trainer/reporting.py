"""The training thread's bridge to the database, and the holder's side of the job lease.

Every write is fenced on `worker_id`: a worker whose lease lapsed (and whose job another worker
took over) can no longer change the job, whatever it still tries to write.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import FineTuningJob, FineTuningJobCheckpoint
from service.fine_tuning import add_event, checkpoint_model_name, new_event
from service.ids import new_id, now_s
from service.storage import ObjectStorage
from trainer.job import Control


def _fmt(metrics: dict[str, float]) -> str:
    parts = [f"training loss={metrics['train_loss']:.4f}"]
    if metrics.get("valid_loss") is not None:
        parts.append(f"validation loss={metrics['valid_loss']:.4f}")
    return ", ".join(parts)


@dataclass
class JobLease:
    """What the worker knows about the job it holds, updated by the heartbeat."""

    job_id: str
    worker_id: str
    lease_s: int
    control: Control | None = None
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)

    def holder(self) -> Any:
        return (FineTuningJob.id == self.job_id) & (FineTuningJob.worker_id == self.worker_id)


async def renew(sessionmaker: async_sessionmaker[AsyncSession], lease: JobLease) -> None:
    """Extend the lease and read what the user asked for since (cancel, pause)."""
    async with sessionmaker() as session:
        result = await session.execute(
            update(FineTuningJob).where(lease.holder()).values(lease_expires_at=now_s() + lease.lease_s)
        )
        status = await session.scalar(select(FineTuningJob.status).where(FineTuningJob.id == lease.job_id))
        await session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        lease.control = "lost"
    elif status == "cancelled":
        lease.control = "cancel"
    elif status == "paused":
        lease.control = "pause"
    elif lease.shutting_down.is_set():
        lease.control = "requeue"


async def heartbeat(sessionmaker: async_sessionmaker[AsyncSession], lease: JobLease, interval_s: float) -> None:
    """Renew the lease every `interval_s` (at once when the worker starts shutting down) until the
    job is cancelled, paused or lost; the training thread reads `lease.control` between steps."""
    while True:
        await renew(sessionmaker, lease)
        if lease.control in ("cancel", "pause", "lost"):
            return
        if lease.shutting_down.is_set():
            await asyncio.sleep(interval_s)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lease.shutting_down.wait(), timeout=interval_s)


class DatabaseReporter:
    """`trainer.job.Reporter` for a thread: each call runs on the worker's event loop and waits."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        lease: JobLease,
        fine_tuned_model: str,
        checkpoints_kept: int,
    ) -> None:
        self.loop, self.sessionmaker, self.storage, self.lease = loop, sessionmaker, storage, lease
        self.fine_tuned_model = fine_tuned_model
        self.checkpoints_kept = checkpoints_kept
        self._last_control_check = 0.0

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _add_events(self, *events: Any, values: dict[str, Any] | None = None) -> None:
        async with self.sessionmaker() as session:
            if values:
                await session.execute(update(FineTuningJob).where(self.lease.holder()).values(**values))
            session.add_all(events)
            await session.commit()

    def event(self, message: str, *, level: str = "info", type: str = "message", data: Any = None) -> None:
        self._run(self._add_events(new_event(self.lease.job_id, message, level=level, type=type, data=data)))  # type: ignore[arg-type]

    def progress(self, step: int, total_steps: int, metrics: dict[str, float], estimated_finish: int) -> None:
        data = {"step": step, "total_steps": total_steps, **metrics}
        message = f"Step {step}/{total_steps}: {_fmt(metrics)}"
        event = new_event(self.lease.job_id, message, type="metrics", data=data)
        self._run(self._add_events(event, values={"estimated_finish": estimated_finish}))

    def checkpoint(self, step: int, metrics: dict[str, float], adapter_prefix: str, resume_prefix: str) -> None:
        self._run(self._checkpoint(step, metrics, adapter_prefix, resume_prefix))

    async def _checkpoint(self, step: int, metrics: dict[str, float], adapter_prefix: str, resume_prefix: str) -> None:
        name = checkpoint_model_name(self.fine_tuned_model, step)
        async with self.sessionmaker() as session:
            held = await session.execute(
                update(FineTuningJob).where(self.lease.holder()).values(resume_checkpoint=resume_prefix)
            )
            if held.rowcount != 1:  # type: ignore[attr-defined]
                return
            await session.execute(delete(FineTuningJobCheckpoint).where(
                FineTuningJobCheckpoint.fine_tuned_model_checkpoint == name
            ))  # fmt: skip
            session.add(FineTuningJobCheckpoint(
                id=new_id("ftckpt_"), job_id=self.lease.job_id, created_at=now_s(),
                fine_tuned_model_checkpoint=name, step_number=step, metrics={"step": step, **metrics},
                storage_prefix=resume_prefix,
            ))  # fmt: skip
            add_event(session, self.lease.job_id, f"Checkpoint created at step {step}")
            await session.flush()
            rows = list(await session.scalars(
                select(FineTuningJobCheckpoint).where(FineTuningJobCheckpoint.job_id == self.lease.job_id)
                .order_by(FineTuningJobCheckpoint.step_number.desc())
            ))  # fmt: skip
            stale = rows[self.checkpoints_kept :]
            if stale:
                await session.execute(delete(FineTuningJobCheckpoint).where(
                    FineTuningJobCheckpoint.seq.in_([r.seq for r in stale])
                ))  # fmt: skip
            await session.commit()
        # Rows first, then bytes: a crash in between leaves unreferenced bytes, never a dangling row.
        for row in stale:
            await asyncio.to_thread(self.storage.delete_prefix, row.storage_prefix)

    def control(self) -> Control | None:
        return self.lease.control
