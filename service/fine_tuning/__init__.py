"""A fine-tuning job's life: its rules, its states, and the only code that changes them.

The life of a job, as OpenAI's (every arrow is one function of `service.fine_tuning.states`
or `service.fine_tuning.leases`, named on the arrow):

                       create
                         │
                         ▼
    ┌──────────── validating_files ──validation_failed──▶ failed
    │                    │ validated
    │                    ▼
    │   ┌──────────▶  queued  ◀──────────────┐ requeue_lapsed (reconciler: the lease lapsed;
    │   │                │                   │   `failed` instead after `max_restarts` of them)
    │   │ resume         │ claim (a worker)  │ stop("requeue") (the worker is shutting down)
    │   │                ▼                   │
    │ paused ◀─pause── running ──────────────┘
    │   ▲                │ ╲
    │   └─pause (queued) │  ╲─fail──▶ failed
    │                    │ succeed
    │                    ▼
    │                succeeded
    └──cancel──▶ cancelled   (from validating_files, queued, running or paused)

A worker holds a `running` job under a lease (`worker_id`, `lease_expires_at`), renewed every
second (`leases.renew`). Every write a worker makes (status, events, checkpoints, the estimated
finish) is one guarded UPDATE that names its `worker_id` and an unexpired lease compared on the
database's clock, so a worker whose lease lapsed can change nothing, and two workers never both
record progress of one job. A paused job keeps its lease until its worker has saved the
training state (`leases.stop`).

Every transition is one guarded statement (an INSERT for `create`) plus the event it writes, in
one transaction, and returns whether it won. Nothing else writes `fine_tuning_jobs.status`, the
lease columns or `fine_tuning_job_events` (`tests/test_job_states.py` checks it).

Faults: callers outside a request (validator, reconciler, worker) run transitions through
`service.fine_tuning.retrying`, which retries transient database and Redis faults with backoff.
A worker that cannot renew its lease before it lapses stops training at the next step, keeps
nothing of its in-memory progress and writes nothing more: whoever claims the job next resumes
it from its last checkpoint.
"""

from __future__ import annotations

from typing import Any, Literal

from service.db.models import FineTuningJob

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATUSES: frozenset[str] = frozenset({"validating_files", "queued", "running"})
CANCELLABLE_STATUSES: frozenset[str] = frozenset({"validating_files", "queued", "running", "paused"})

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
