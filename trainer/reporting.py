"""The worker's side of a job lease, and the training thread's bridge to the database.

Every write goes through a transition of `service.fine_tuning.leases`, guarded by this worker's
lease on the database's clock, and is retried on transient faults only for as long as the lease
lasts. Once a write finds the lease gone, or cannot be made before the lease would lapse, the
lease is `lost`: the training thread stops at its next step, keeps nothing, and writes nothing
more. Whoever claims the job next resumes it from its last recorded checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import FineTuningJobCheckpoint
from service.fine_tuning import checkpoint_model_name, leases
from service.fine_tuning.events import job_event
from service.fine_tuning.leases import Lease
from service.fine_tuning.retrying import in_session, is_transient
from service.ids import new_id, now_s
from service.metrics import trainer as worker_metrics
from service.storage import ObjectStorage
from trainer.job import Control

log = logging.getLogger("ftserve.worker")
LEASE_MARGIN_S = 1.5
"""Safety margin on the worker's estimate of its lease: the database stores whole seconds."""


def _fmt(metrics: dict[str, float]) -> str:
    parts = [f"training loss={metrics['train_loss']:.4f}"]
    if metrics.get("valid_loss") is not None:
        parts.append(f"validation loss={metrics['valid_loss']:.4f}")
    return ", ".join(parts)


@dataclass
class HeldJob:
    """What the worker knows about the job it holds; the heartbeat keeps it current."""

    lease: Lease
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    control: Control | None = None
    """Why training must stop, if it must; `lost` is final."""
    deadline: float = 0.0
    """`time.monotonic()` by which the lease lapses unless renewed (the worker's own estimate)."""

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.lease.lease_s - LEASE_MARGIN_S

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def stop_for(self, control: Control) -> None:
        if self.control != "lost":
            self.control = control


async def guarded_write(
    sessionmaker: async_sessionmaker[AsyncSession], held: HeldJob, transition: Callable[..., Awaitable[Any]],
    *args: Any, **kwargs: Any,
) -> Any:  # fmt: skip
    """Run a lease transition, retrying transient faults while the lease lasts; None once it is lost."""
    if held.control == "lost":
        return None
    try:
        result = await in_session(sessionmaker, transition, held.lease, *args, within_s=held.remaining_s(), **kwargs)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("job %s: the database stayed unreachable for the rest of the lease (%s); letting the job go",
                    held.lease.job_id, type(exc).__name__)  # fmt: skip
        held.stop_for("lost")
        return None
    if result is None or result is False:
        held.stop_for("lost")
        return None
    return result


async def heartbeat(sessionmaker: async_sessionmaker[AsyncSession], held: HeldJob, interval_s: float) -> None:
    """Renew the lease every `interval_s` (at once when the worker starts shutting down) until the
    worker stops it or the lease is lost; read cancel and pause requests on the way."""
    while True:
        started = time.monotonic()
        status = await guarded_write(sessionmaker, held, leases.renew)
        if status is None:
            log.warning("job %s: lease lost; training stops at the next step", held.lease.job_id)
            return
        held.deadline = started + held.lease.lease_s - LEASE_MARGIN_S
        worker_metrics.LAST_HEARTBEAT.set_to_current_time()
        if status == "cancelled":
            held.stop_for("cancel")
        elif status != "running":  # paused, or paused and resumed before this worker saw it
            held.stop_for("pause")
        elif held.shutting_down.is_set():
            held.stop_for("requeue")
        if held.shutting_down.is_set():
            await asyncio.sleep(interval_s)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held.shutting_down.wait(), timeout=interval_s)


_last_step: tuple[int, float] | None = None
"""The step last reported and when (monotonic), for the step rate."""


def observe_progress(step: int, metrics: dict[str, float]) -> None:
    """Set the worker's training gauges (`/metrics` on its health port) from a progress report."""
    global _last_step
    now = time.monotonic()
    if _last_step is not None and step > _last_step[0] and now > _last_step[1]:
        worker_metrics.STEP_RATE.set((step - _last_step[0]) / (now - _last_step[1]))
        worker_metrics.STEPS.inc(step - _last_step[0])
    _last_step = (step, now)
    if "tokens_per_second" in metrics:
        worker_metrics.TOKENS_PER_SECOND.set(metrics["tokens_per_second"])
    if "mfu" in metrics:
        worker_metrics.MFU.set(metrics["mfu"])


class DatabaseReporter:
    """`trainer.job.Reporter` for the training thread: each call runs on the worker's event loop
    and returns once the database has it, or once the lease is lost (then it writes nothing)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: ObjectStorage,
        held: HeldJob,
        fine_tuned_model: str,
        checkpoints_kept: int,
    ) -> None:
        self.loop, self.sessionmaker, self.storage, self.held = loop, sessionmaker, storage, held
        self.fine_tuned_model = fine_tuned_model
        self.checkpoints_kept = checkpoints_kept

    def _write(self, transition: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        if self.held.control == "lost":
            return None
        coro = guarded_write(self.sessionmaker, self.held, transition, *args, **kwargs)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def event(self, message: str, *, level: str = "info", type: str = "message", data: Any = None) -> None:
        event = job_event(self.held.lease.job_id, message, level=level, type=type, data=data)  # type: ignore[arg-type]
        self._write(leases.report, [event])

    def progress(self, step: int, total_steps: int, metrics: dict[str, float], estimated_finish: int) -> None:
        observe_progress(step, metrics)
        data = {"step": step, "total_steps": total_steps, **metrics}
        message = f"Step {step}/{total_steps}: {_fmt(metrics)}"
        event = job_event(self.held.lease.job_id, message, type="metrics", data=data, step=step)
        self._write(leases.report, [event], estimated_finish=estimated_finish)

    def checkpoint(self, step: int, metrics: dict[str, float], adapter_prefix: str, resume_prefix: str) -> None:
        row = FineTuningJobCheckpoint(
            id=new_id("ftckpt_"), job_id=self.held.lease.job_id, created_at=now_s(),
            fine_tuned_model_checkpoint=checkpoint_model_name(self.fine_tuned_model, step), step_number=step,
            metrics={"step": step, **metrics}, storage_prefix=resume_prefix,
        )  # fmt: skip
        stale = self._write(leases.record_checkpoint, row, keep=self.checkpoints_kept)
        # Rows first, then bytes: a crash in between leaves unreferenced bytes, never a dangling row.
        for prefix in stale or []:
            self.storage.delete_prefix(prefix)

    def control(self) -> Control | None:
        return self.held.control
