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

HYPERPARAMETER_NAMES = ("n_epochs", "batch_size", "learning_rate_multiplier")
DPO_DEFAULT_BETA = 0.1


def resolve_hyperparameters(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """Replace each `"auto"` with a number chosen from the data set's size.

    The rules (documented in the README):
    - `n_epochs`: aim for 3 passes, but see every example ~100 times in all on small sets and
      at most ~25,000 example-passes on large ones: `3`, raised to `min(25, 100 // n)` when
      `3n < 100`, lowered to `max(1, 25000 // n)` when `3n > 25000`.
    - `batch_size`: about 0.2% of the examples, between 1 and 256.
    - `learning_rate_multiplier`: 1.0, the catalogue's learning rate for the base model as is.

    Example:
        >>> resolve_hyperparameters({"n_epochs": "auto", "batch_size": 4}, 20)
        {'n_epochs': 5, 'batch_size': 4, 'learning_rate_multiplier': 1.0}
    """
    resolved = dict(requested)
    if resolved.get("n_epochs", "auto") == "auto":
        epochs = 3
        if n_examples * epochs < 100:
            epochs = min(25, 100 // max(n_examples, 1))
        elif n_examples * epochs > 25_000:
            epochs = max(1, 25_000 // n_examples)
        resolved["n_epochs"] = epochs
    if resolved.get("batch_size", "auto") == "auto":
        resolved["batch_size"] = max(1, min(256, round(n_examples * 0.002)))
    if resolved.get("learning_rate_multiplier", "auto") == "auto":
        resolved["learning_rate_multiplier"] = 1.0
    if "beta" in resolved and resolved["beta"] == "auto":
        resolved["beta"] = DPO_DEFAULT_BETA
    return {k: resolved[k] for k in (*HYPERPARAMETER_NAMES, *(["beta"] if "beta" in resolved else []))}


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
