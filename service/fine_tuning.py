"""Fine-tuning job rules shared by the API, the validator and the trainer workers.

The life of a job, as OpenAI's:

    validating_files ──> queued ──> running ──> succeeded
          │                │  ▲        │  ╲──> failed
          │                │  │        │
          └──> failed      │  └─ paused <┘   (pause / resume)
                           └──> cancelled  (from any state that is not final)

The database row is the truth; Redis only carries the wake-up calls (see `service.queue`).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import FineTuningJob, FineTuningJobEvent
from service.ids import new_id, now_s

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATUSES: frozenset[str] = frozenset({"validating_files", "queued", "running"})

MIN_EXAMPLES = 10
"""OpenAI's minimum: fewer examples fail with `invalid_n_examples`."""


def method_hyperparameters(job: FineTuningJob) -> dict[str, Any]:
    """The hyperparameters inside the job's `method`, whatever its type."""
    method = job.method or {}
    return dict((method.get(method.get("type", "supervised")) or {}).get("hyperparameters") or {})


def with_hyperparameters(method: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any]:
    kind = method.get("type", "supervised")
    return {**method, kind: {**(method.get(kind) or {}), "hyperparameters": hyperparameters}}


def fine_tuned_model_name(base: str, organization: str, suffix: str | None, job_id: str) -> str:
    """`ft:{base}:{org}:{suffix}:{job}`; an empty suffix leaves its slot empty, as OpenAI's.

    Example:
        >>> fine_tuned_model_name("tiny-chat", "acme", None, "ftjob-abc")
        'ft:tiny-chat:acme::ftjob-abc'
    """
    return f"ft:{base}:{organization}:{suffix or ''}:{job_id}"


def checkpoint_model_name(fine_tuned_model: str, step: int) -> str:
    return f"{fine_tuned_model}:ckpt-step-{step}"


def job_storage_prefix(job: FineTuningJob) -> str:
    """Where a job's adapter, checkpoints and training state live in object storage."""
    return f"jobs/{job.organization_id}/{job.id}/"


def new_event(
    job_id: str,
    message: str,
    *,
    level: Literal["info", "warn", "error"] = "info",
    type: Literal["message", "metrics"] = "message",
    data: dict[str, Any] | None = None,
) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=new_id("ftevent-"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        message=message,
        type=type,
        data=data,
    )


def add_event(session: AsyncSession, job_id: str, message: str, **kwargs: Any) -> None:
    """Add an event to the session; the caller commits it with the change it describes."""
    session.add(new_event(job_id, message, **kwargs))
