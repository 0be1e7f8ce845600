"""Fine-tuning job logic for one organisation: create, list, and the state changes a client asks for."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.fine_tuning.schemas import CreateJobRequest
from service.api.pagination import Page, cursor_page
from service.catalog import BaseModel, Catalog
from service.db.models import File, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent, Organization
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.evals.sampler import GatewaySampler
from service.fine_tuning import CANCELLABLE_STATUSES, states
from service.fine_tuning.retrying import retry_transient
from service.graders import RUNNABLE, GradingOptions, check_grader
from service.ids import new_id, now_s
from service.logging_config import REQUEST_ID
from service.queue import enqueue_training, enqueue_validation
from service.rate_limits import check_active_job_limit
from service.served_models import resolve_model
from service.settings import Settings

log = logging.getLogger("ftserve.jobs")
ENQUEUE_RETRY_S = 2.0
"""How long a request retries Redis before it answers anyway and leaves the job to the reconciler."""

SUPPORTED_METHODS = frozenset({"supervised", "dpo", "reinforcement"})
RFT_AUTO_NAMES = ("compute_multiplier", "eval_interval", "eval_samples")


def _method(request: CreateJobRequest) -> dict[str, Any]:
    """The request's method with every hyperparameter present (`"auto"` where not given)."""
    if request.method is not None and request.hyperparameters is not None:
        raise InvalidRequestError(
            "Give hyperparameters in 'method' or in the deprecated 'hyperparameters', not both.",
            param="hyperparameters",
        )
    if request.method is None:
        given = request.hyperparameters.model_dump() if request.hyperparameters else {}
        return {"type": "supervised", "supervised": {"hyperparameters": _with_autos(given, dpo=False)}}
    kind = request.method.type
    if kind not in SUPPORTED_METHODS:
        raise InvalidRequestError(
            f"Method {kind!r} is not supported by this server; use 'supervised' or 'dpo'.", param="method.type"
        )
    body = getattr(request.method, kind)
    given = body.hyperparameters.model_dump() if body and body.hyperparameters else {}
    if kind == "reinforcement":
        if body is None:
            raise InvalidRequestError("A reinforcement job needs `method.reinforcement.grader`.",
                                      param="method.reinforcement.grader")  # fmt: skip
        hyperparameters = {**_with_autos(given, dpo=False), **{n: given.get(n, "auto") for n in RFT_AUTO_NAMES},
                           "reasoning_effort": given.get("reasoning_effort", "default")}  # fmt: skip
        return {"type": kind, kind: {"grader": body.grader, "hyperparameters": hyperparameters}}
    return {"type": kind, kind: {"hyperparameters": _with_autos(given, dpo=kind == "dpo")}}


async def _check_grader(method: dict[str, Any], options: GradingOptions) -> None:
    """A reinforcement job's grader, checked as `/fine_tuning/alpha/graders/validate` checks it:
    a mistake is a 400 whose `param` names the field under `method.reinforcement.grader`."""
    if method["type"] != "reinforcement":
        return
    await check_grader(method["reinforcement"]["grader"], options, allowed=RUNNABLE,
                       param="method.reinforcement.grader")  # fmt: skip


def _request_hash(request: CreateJobRequest) -> str:
    """A digest of what the request asks for, independent of key order and of omitted defaults."""
    body = json.dumps(request.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _same_request(existing: FineTuningJob, fingerprint: str | None) -> FineTuningJob:
    """The first job of an Idempotency-Key, if this request is the same one sent again."""
    if existing.idempotency_hash is not None and fingerprint is not None and existing.idempotency_hash != fingerprint:
        raise InvalidRequestError(
            "This Idempotency-Key was already used for a request with a different body; use a new key for a new job.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return existing


def _with_autos(given: dict[str, Any], *, dpo: bool) -> dict[str, Any]:
    names = ["batch_size", "learning_rate_multiplier", "n_epochs", *(["beta"] if dpo else [])]
    return {name: given.get(name, "auto") for name in names}


@dataclass
class JobService:
    """Fine-tuning jobs of one organisation."""

    session: AsyncSession
    organization: Organization
    catalog: Catalog
    queue: ArqRedis
    max_active_jobs: int = 0
    """Jobs the organisation may have validating, queued or running at once (0: no limit)."""
    grading: GradingOptions | None = None
    """How a reinforcement job's grader is checked (the API's, with its model sampler); None: built
    from the environment's settings, with a sampler that checks the organisation's models."""

    def _grading(self) -> GradingOptions:
        if self.grading is None:
            settings = Settings()
            # Checking a model grader resolves its model only; sampling (which needs HTTP) never runs here.
            sampler = GatewaySampler(async_sessionmaker(self.session.bind, expire_on_commit=False), settings,
                                     None, self.organization, param="method.reinforcement.grader.model")  # type: ignore[arg-type]  # fmt: skip
            self.grading = GradingOptions.from_settings(settings, sampler)
        return self.grading

    async def _training_file(self, file_id: str, param: str) -> File:
        row = await self.session.scalar(
            select(File).where(File.id == file_id, File.organization_id == self.organization.id)
        )
        if row is None or (row.expires_at is not None and row.expires_at <= now_s()):
            raise InvalidRequestError(f"File {file_id} not found.", param=param, code="file_not_found")
        if row.purpose != "fine-tune":
            raise InvalidRequestError(
                f"File {file_id} has purpose {row.purpose!r}; fine-tuning needs purpose 'fine-tune'.",
                param=param,
                code="invalid_file_purpose",
            )
        return row

    async def create(self, request: CreateJobRequest, idempotency_key: str | None) -> FineTuningJob:
        """Record the job (`validating_files`), commit, then enqueue its validation.

        A repeated `Idempotency-Key` with the same body returns the job the first request created;
        with another body it is refused. Should Redis fail after the commit, the job is still
        answered: the database is the truth, and the reconciler enqueues it.
        """
        fingerprint = _request_hash(request) if idempotency_key else None
        if idempotency_key:
            existing = await self._by_idempotency_key(idempotency_key)
            if existing is not None:
                return _same_request(existing, fingerprint)
        base, source_adapter = await self._starting_point(request.model)
        if request.suffix is not None and (":" in request.suffix or not request.suffix.strip()):
            raise InvalidRequestError("suffix may not contain ':' or be blank.", param="suffix")
        method = _method(request)
        await _check_grader(method, self._grading())
        await check_active_job_limit(self.session, self.organization.id, self.max_active_jobs)
        await self._training_file(request.training_file, "training_file")
        if request.validation_file:
            await self._training_file(request.validation_file, "validation_file")
        job_id = new_id("ftjob-")
        row = FineTuningJob(
            id=job_id,
            organization_id=self.organization.id,
            model=request.model,
            base_model=base.name,
            source_adapter=source_adapter,
            training_file=request.training_file,
            validation_file=request.validation_file,
            suffix=request.suffix,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            method=method,
            metadata_=request.metadata,
            integrations=[i.model_dump(exclude_none=True) for i in request.integrations]
            if request.integrations
            else None,
            status="validating_files",
            result_files=[],
            created_at=now_s(),
            idempotency_key=idempotency_key,
            idempotency_hash=fingerprint,
        )
        try:
            await states.create(self.session, row)
        except IntegrityError:
            # Two requests with one Idempotency-Key raced: the other one won; answer with its job.
            await self.session.rollback()
            existing = await self._by_idempotency_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return _same_request(existing, fingerprint)
        try:
            request_id = REQUEST_ID.get()
            await retry_transient(lambda: enqueue_validation(self.queue, job_id, request_id), within_s=ENQUEUE_RETRY_S)
        except Exception as exc:
            log.warning("job %s created but not enqueued (%s); the reconciler will enqueue it", job_id, exc)
        return row

    async def _starting_point(self, model: str) -> tuple[BaseModel, str | None]:
        """The base model a job on `model` trains, and the adapter it starts from: None for a
        catalogue model; for a fine-tuned model or checkpoint the organisation may call (its own,
        or one shared with it), that adapter's storage prefix. Anything else, a deleted or a
        foreign model included, answers the same 400, so that no one learns what exists."""
        served = await resolve_model(self.session, self.catalog, self.organization, model)
        trainable = served is not None and served.base.task != "embed"  # embeddings models are served, not tuned
        if served is None or not trainable or (model.startswith("ft:") and served.adapter is None):
            raise InvalidRequestError(
                f"Model {model!r} is not available for fine-tuning. Available: {', '.join(self.catalog.names())}, "
                "or a fine-tuned model or checkpoint of your organization.",
                param="model",
                code="model_not_available",
            )
        return served.base, served.adapter

    async def _by_idempotency_key(self, key: str) -> FineTuningJob | None:
        return await self.session.scalar(
            select(FineTuningJob).where(
                FineTuningJob.organization_id == self.organization.id, FineTuningJob.idempotency_key == key
            )
        )

    async def get(self, job_id: str) -> FineTuningJob:
        row = await self.session.scalar(
            select(FineTuningJob).where(
                FineTuningJob.id == job_id, FineTuningJob.organization_id == self.organization.id
            )
        )
        if row is None:
            raise NotFoundError.for_object("FineTuningJob", job_id, param="fine_tuning_job_id")
        return row

    async def list(
        self,
        *,
        limit: int,
        after: str | None,
        metadata: dict[str, str] | None,
        status: str | None = None,
        model: str | None = None,
    ) -> Page[FineTuningJob]:
        query = select(FineTuningJob).where(FineTuningJob.organization_id == self.organization.id)
        if status is not None:
            query = query.where(FineTuningJob.status == status)
        if model is not None:  # the name the job asked for, or the base model it resolved to
            query = query.where((FineTuningJob.model == model) | (FineTuningJob.base_model == model))
        if metadata is None:
            return await cursor_page(self.session, query, FineTuningJob, limit=limit, after=after)
        page = await cursor_page(self.session, query, FineTuningJob, limit=2**31, after=after)
        # JSON containment differs between SQLite and PostgreSQL; filter here, page after filtering.
        if metadata:
            matching = [j for j in page.items if all((j.metadata_ or {}).get(k) == v for k, v in metadata.items())]
        else:  # `metadata=null`: the jobs that have none
            matching = [j for j in page.items if not j.metadata_]
        return Page(items=matching[:limit], has_more=len(matching) > limit)

    async def _refused(self, job_id: str, action: str, allowed: set[str]) -> ConflictError:
        current = await self._reloaded(job_id)
        return ConflictError(
            f"Job {job_id} is {current.status}; {action} needs it to be {' or '.join(sorted(allowed))}.",
            param="fine_tuning_job_id",
            code="invalid_job_state",
        )

    async def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel at once; a worker training the job sees it within a second and stops.

        Cancelling a cancelled job answers the job (an SDK retrying after a timeout must not fail)."""
        await self.get(job_id)
        if not await states.cancel(self.session, job_id, self.organization.id):
            job = await self._reloaded(job_id)
            if job.status == "cancelled":
                return job
            raise await self._refused(job_id, "cancelling", set(CANCELLABLE_STATUSES))
        return await self._reloaded(job_id)

    async def pause(self, job_id: str) -> FineTuningJob:
        """Pause: a running job saves a checkpoint of its full training state and frees its worker."""
        await self.get(job_id)
        if not await states.pause(self.session, job_id, self.organization.id):
            raise await self._refused(job_id, "pausing", {"queued", "running"})
        return await self._reloaded(job_id)

    async def resume(self, job_id: str) -> FineTuningJob:
        """Back to `queued`; training continues from the step the pause saved."""
        await self.get(job_id)
        if not await states.resume(self.session, job_id, self.organization.id):
            raise await self._refused(job_id, "resuming", {"paused"})
        try:
            await retry_transient(lambda: enqueue_training(self.queue, job_id), within_s=ENQUEUE_RETRY_S)
        except Exception as exc:
            log.warning("job %s resumed but not enqueued (%s); the reconciler will enqueue it", job_id, exc)
        return await self._reloaded(job_id)

    async def _reloaded(self, job_id: str) -> FineTuningJob:
        job = await self.get(job_id)
        await self.session.refresh(job)
        return job

    async def events(self, job_id: str, *, limit: int, after: str | None) -> Page[FineTuningJobEvent]:
        await self.get(job_id)
        query = select(FineTuningJobEvent).where(FineTuningJobEvent.job_id == job_id)
        return await cursor_page(self.session, query, FineTuningJobEvent, limit=limit, after=after)

    async def checkpoints(self, job_id: str, *, limit: int, after: str | None) -> Page[FineTuningJobCheckpoint]:
        await self.get(job_id)
        query = select(FineTuningJobCheckpoint).where(FineTuningJobCheckpoint.job_id == job_id)
        return await cursor_page(self.session, query, FineTuningJobCheckpoint, limit=limit, after=after)


async def events_since(
    session: AsyncSession, job_id: str, after_seq: int, limit: int
) -> tuple[str | None, list[FineTuningJobEvent]]:
    """The job's status (None if gone), then up to `limit` of its events numbered after `after_seq`,
    in order. The status is read first: once it is final, the events read after it include the last."""
    status = await session.scalar(select(FineTuningJob.status).where(FineTuningJob.id == job_id))
    query = (
        select(FineTuningJobEvent)
        .where(FineTuningJobEvent.job_id == job_id, FineTuningJobEvent.job_seq > after_seq)
        .order_by(FineTuningJobEvent.job_seq)
        .limit(limit)
    )
    return status, list(await session.scalars(query))
