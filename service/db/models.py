"""The database schema: organisations, API keys, files, uploads, fine-tuning jobs and their events.

Every tenant-owned row carries `organization_id`; every query the API makes filters on it.
`seq` is an insertion-ordered integer key, so cursor pages (`after=<id>`) are stable even when
many rows share one `created_at` second.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    """The slug used in fine-tuned model ids (`ft:{base}:{org}:…`)."""
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    """A prefix of the secret, to find the row without comparing every hash."""
    key_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the whole key; the key itself is never stored."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Set by `ftserve keys revoke`; a revoked key is refused from then on."""
    expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """When the key stops working (Unix seconds); None: never."""
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Last request made with the key, to the minute (recorded at most once a minute)."""
    is_admin: Mapped[bool] = mapped_column(default=False)
    """Admin keys may also manage what the organisation shares (checkpoint permissions)."""


class File(Base):
    __tablename__ = "files"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str | None] = mapped_column(Text, default=None)
    storage_key: Mapped[str] = mapped_column(Text)


class Upload(Base):
    __tablename__ = "uploads"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    file_expires_after_s: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """`expires_after.seconds` for the file the upload becomes."""
    file_id: Mapped[str | None] = mapped_column(String(64), default=None)


class UploadPart(Base):
    __tablename__ = "upload_parts"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class FineTuningJob(Base):
    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        Index("ix_fine_tuning_jobs_lease", "status", "lease_expires_at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(256))
    """The base model as the client named it (a catalogue name or alias)."""
    base_model: Mapped[str] = mapped_column(String(256))
    """The catalogue entry it resolved to."""
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), default=None)
    suffix: Mapped[str | None] = mapped_column(String(64), default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    """`{"type": ..., "<type>": {"hyperparameters": {...}}}` with `auto` resolved once known."""
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, default=None)
    integrations: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(32), index=True)
    requested_action: Mapped[str | None] = mapped_column(String(16), default=None)
    """`cancel` or `pause`, set by the API and honoured by the worker between steps."""
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512), default=None, index=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resume_checkpoint: Mapped[str | None] = mapped_column(Text, default=None)
    """Storage prefix of the training state to resume from after a pause or a lost worker."""
    idempotency_key: Mapped[str | None] = mapped_column(String(256), default=None)
    idempotency_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the creating request's body: the same key with another body is refused."""
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    """The trainer worker holding the job; null when none does."""
    lease_expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """The holder renews this while it trains; once it passes, the reconciler requeues the job."""
    started_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """When `DELETE /v1/models/{fine_tuned_model}` removed the tuned model (its checkpoints stay)."""
    events_written: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many events the job has had; the transition that writes an event numbers it from this."""
    source_adapter: Mapped[str | None] = mapped_column(Text, default=None)
    """Storage prefix of the adapter the job starts from when `model` is a fine-tuned model or a
    checkpoint (`ft:…`); None when it starts from the bare base model."""
    lapsed_restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times the job went back to `queued` because its worker stopped renewing its lease since the
    job's last checkpoint (`states.requeue_lapsed`); past `max_restarts` the job fails instead."""


class FineTuningJobEvent(Base):
    __tablename__ = "fine_tuning_job_events"
    __table_args__ = (
        Index("ix_fine_tuning_job_events_job_id_step", "job_id", "step"),
        UniqueConstraint("job_id", "job_seq", name="uq_fine_tuning_job_events_job_id_job_seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    job_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    """1, 2, 3… per job, in the order the job's transitions committed them: a reader that follows a
    job's events by `job_seq` never skips one (the table-wide `seq` may commit out of order)."""
    step: Mapped[int | None] = mapped_column(Integer, default=None)
    """The training step of a `metrics` event; a resumed run replaces the events of the steps it
    trains again, so that a job reports each step once (see `service.jobs`)."""


class FineTuningJobCheckpoint(Base):
    __tablename__ = "fine_tuning_job_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(512), unique=True)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    storage_prefix: Mapped[str] = mapped_column(Text)
    """Where the checkpoint's PEFT adapter directory lives in object storage."""


class Eval(Base):
    """An eval: how items are shaped (`data_source_config`) and the graders that judge them."""

    __tablename__ = "evals"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, default=None)
    data_source_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    testing_criteria: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)


class EvalRun(Base):
    """One run of an eval over a data source; the eval runner fills its counts as it goes."""

    __tablename__ = "eval_runs"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    eval_id: Mapped[str] = mapped_column(ForeignKey("evals.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(512))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, default=None)
    data_source: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    result_counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    per_testing_criteria_results: Mapped[list[Any]] = mapped_column(JSON)
    per_model_usage: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Renewed by the process executing the run; a stale one means that process is gone."""
    lapsed_restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times the run was started again after its runner died or hit a transient fault; past
    `max_restarts` the run fails instead (`service.evals.runner`)."""


class EvalRunOutputItem(Base):
    """One graded item of a run; unique per (run, item index), so a resumed run never stores it twice."""

    __tablename__ = "eval_run_output_items"
    __table_args__ = (UniqueConstraint("run_id", "datasource_item_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    eval_id: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    datasource_item_id: Mapped[int] = mapped_column(Integer)
    datasource_item: Mapped[dict[str, Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
    results: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)


class CheckpointPermission(Base):
    """A fine-tuned model or checkpoint of `organization_id` that `grantee_id` may call and fine-tune
    from (`/v1/fine_tuning/checkpoints/{model_id}/permissions`)."""

    __tablename__ = "checkpoint_permissions"
    __table_args__ = (UniqueConstraint("model_id", "grantee_id", name="uq_checkpoint_permissions_model_grantee"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    """The granting organisation, which owns the model."""
    model_id: Mapped[str] = mapped_column(String(512), index=True)
    """The `ft:` model or checkpoint id shared, as the path named it."""
    grantee_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    """The organisation it is shared with (a `project_id` in OpenAI's API)."""
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebhookEndpoint(Base):
    """Where an organisation's webhooks go (`ftserve webhooks add`), with the secret that signs them."""

    __tablename__ = "webhook_endpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    """`whsec_<base64>`: the key of the Standard Webhooks signature, shown once when added."""
    event_types: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    """The event types sent there; None for all of them."""
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One event for one endpoint (the outbox): written in the transaction of the state change it
    reports, then sent, and retried, by the API processes' sender until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    """The `webhook-id` header: the same for every attempt, so receivers can deduplicate."""
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    """The body, exactly as signed and sent on every attempt."""
    status: Mapped[str] = mapped_column(String(16))
    """`pending`, `delivered` or `failed` (given up, or a refused target)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float | None] = mapped_column(Float, default=None)
    """A sender's claim on the row while it sends (unix seconds); others skip it until then."""
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger, default=None)


class UsageRecord(Base):
    """Tokens the gateway served for one organisation and model in one minute, as one API process
    counted them between two flushes; the usage endpoint adds the rows of a bucket together."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_org_minute", "organization_id", "minute"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(512))
    """The model id as the client named it."""
    minute: Mapped[int] = mapped_column(BigInteger)
    """Start of the minute (unix seconds) the answers ended in."""
    requests: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    input_cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
