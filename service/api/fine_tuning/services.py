"""Fine-tuning job logic for one organisation: create, list, and the state changes a client asks for."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.fine_tuning.schemas import CreateJobRequest
from service.api.pagination import Page, cursor_page
from service.catalog import Catalog
from service.db.models import File, FineTuningJob, FineTuningJobCheckpoint, FineTuningJobEvent, Organization
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.fine_tuning import FINAL_STATUSES, add_event
from service.ids import new_id, now_s
from service.queue import enqueue_training, enqueue_validation

SUPPORTED_METHODS = frozenset({"supervised", "dpo"})
"""`reinforcement` needs graders this server does not run: a clear 400."""


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
    return {"type": kind, kind: {"hyperparameters": _with_autos(given, dpo=kind == "dpo")}}


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

        A repeated `Idempotency-Key` returns the job the first request created.
        """
        if idempotency_key:
            existing = await self._by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing
        base = self.catalog.resolve(request.model)
        if base is None:
            raise InvalidRequestError(
                f"Model {request.model!r} is not available for fine-tuning. "
                f"Available: {', '.join(self.catalog.names())}.",
                param="model",
                code="model_not_available",
            )
        if request.suffix is not None and (":" in request.suffix or not request.suffix.strip()):
            raise InvalidRequestError("suffix may not contain ':' or be blank.", param="suffix")
        method = _method(request)
        await self._training_file(request.training_file, "training_file")
        if request.validation_file:
            await self._training_file(request.validation_file, "validation_file")
        job_id = new_id("ftjob-")
        row = FineTuningJob(
            id=job_id,
            organization_id=self.organization.id,
            model=request.model,
            base_model=base.name,
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
        )
        self.session.add(row)
        add_event(self.session, job_id, f"Created fine-tuning job: {job_id}")
        try:
            await self.session.commit()
        except IntegrityError:
            # Two requests with one Idempotency-Key raced: the other one won; answer with its job.
            await self.session.rollback()
            existing = await self._by_idempotency_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing
        await enqueue_validation(self.queue, job_id)
        return row

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

    async def list(self, *, limit: int, after: str | None, metadata: dict[str, str] | None) -> Page[FineTuningJob]:
        query = select(FineTuningJob).where(FineTuningJob.organization_id == self.organization.id)
        if metadata is None:
            return await cursor_page(self.session, query, FineTuningJob, limit=limit, after=after)
        page = await cursor_page(self.session, query, FineTuningJob, limit=2**31, after=after)
        # JSON containment differs between SQLite and PostgreSQL; filter here, page after filtering.
        if metadata:
            matching = [j for j in page.items if all((j.metadata_ or {}).get(k) == v for k, v in metadata.items())]
        else:  # `metadata=null`: the jobs that have none
            matching = [j for j in page.items if not j.metadata_]
        return Page(items=matching[:limit], has_more=len(matching) > limit)

    async def _transition(self, job: FineTuningJob, allowed: set[str], values: dict[str, Any], event: str) -> None:
        """Move the job if it is still in an allowed state (checked in the UPDATE itself)."""
        job_id = job.id
        result = await self.session.execute(
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id, FineTuningJob.status.in_(allowed))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # Nothing changed, so no rollback (it would expire the organisation loaded for this request).
            current = await self.get(job_id)
            raise ConflictError(
                f"Job {job_id} is {current.status}; this action needs it to be {' or '.join(sorted(allowed))}.",
                param="fine_tuning_job_id",
                code="invalid_job_state",
            )
        add_event(self.session, job_id, event)
        await self.session.commit()
        await self.session.refresh(job)

    async def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel at once; a worker training the job sees it within a second and stops."""
        job = await self.get(job_id)
        allowed = {"validating_files", "queued", "running", "paused"}
        if job.status in FINAL_STATUSES:
            raise ConflictError(
                f"Job {job_id} has already {job.status}; it cannot be cancelled.",
                param="fine_tuning_job_id",
                code="invalid_job_state",
            )
        await self._transition(job, allowed, {"status": "cancelled", "finished_at": now_s()}, "Job cancelled")
        return job

    async def pause(self, job_id: str) -> FineTuningJob:
        """Pause: a running job saves a checkpoint of its full training state and frees its worker."""
        job = await self.get(job_id)
        await self._transition(job, {"queued", "running"}, {"status": "paused"}, "Job paused")
        return job

    async def resume(self, job_id: str) -> FineTuningJob:
        """Back to `queued`; training continues from the step the pause saved."""
        job = await self.get(job_id)
        await self._transition(job, {"paused"}, {"status": "queued"}, "Job resumed")
        await enqueue_training(self.queue, job.id)
        return job

    async def events(self, job_id: str, *, limit: int, after: str | None) -> Page[FineTuningJobEvent]:
        await self.get(job_id)
        query = select(FineTuningJobEvent).where(FineTuningJobEvent.job_id == job_id)
        return await cursor_page(self.session, query, FineTuningJobEvent, limit=limit, after=after)

    async def checkpoints(self, job_id: str, *, limit: int, after: str | None) -> Page[FineTuningJobCheckpoint]:
        await self.get(job_id)
        query = select(FineTuningJobCheckpoint).where(FineTuningJobCheckpoint.job_id == job_id)
        return await cursor_page(self.session, query, FineTuningJobCheckpoint, limit=limit, after=after)
