"""Which models an organisation may call, and where each one's weights are.

A model id is one of:
- a catalogue base model or alias (`tiny-chat`), served by its base model's inference server;
- a fine-tuned model (`ft:{base}:{org}:{suffix}:{job}`) of a succeeded, undeleted job of the
  caller's organisation: the job's adapter;
- a checkpoint (`ft:…:ckpt-step-N`) of one of the organisation's jobs: that epoch's adapter;
- either of the last two, of another organisation that shared it with the caller's through a
  checkpoint permission (`service.api.checkpoints`); `owned_by` is then the owner's name.

The adapter is named to the inference server by its storage prefix, which the server's LoRA
resolver downloads (see `inference.resolver`); the client's id never reaches vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.catalog import BaseModel, Catalog
from service.db.models import CheckpointPermission, FineTuningJob, FineTuningJobCheckpoint, Organization
from service.fine_tuning.layout import adapter_prefix, saved_adapter_prefix

SYSTEM_OWNER = "system"
"""`owned_by` of catalogue base models."""


@dataclass(frozen=True)
class ServedModel:
    id: str
    """The id as the client names it."""
    base: BaseModel
    """The catalogue base model whose inference server serves it."""
    adapter: str | None
    """Storage prefix of the PEFT adapter; None for the base model itself."""
    created: int
    owned_by: str
    job_id: str | None = None


def _job_model(job: FineTuningJob, base: BaseModel, organization: Organization) -> ServedModel:
    return ServedModel(
        id=job.fine_tuned_model or "",
        base=base,
        adapter=adapter_prefix(job.organization_id, job.id),
        created=job.finished_at or job.created_at,
        owned_by=organization.name,
        job_id=job.id,
    )


def _checkpoint_model(checkpoint: FineTuningJobCheckpoint, base: BaseModel, organization: Organization) -> ServedModel:
    return ServedModel(
        id=checkpoint.fine_tuned_model_checkpoint,
        base=base,
        adapter=saved_adapter_prefix(checkpoint.storage_prefix),
        created=checkpoint.created_at,
        owned_by=organization.name,
        job_id=checkpoint.job_id,
    )


def _base_model(model: BaseModel, name: str) -> ServedModel:
    return ServedModel(id=name, base=model, adapter=None, created=0, owned_by=SYSTEM_OWNER)


async def resolve_model(
    session: AsyncSession, catalog: Catalog, organization: Organization, model_id: str
) -> ServedModel | None:
    """The model the organisation may call under `model_id`, or None (unknown, foreign and not
    shared with it, or deleted)."""
    if not model_id.startswith("ft:"):
        base = catalog.resolve(model_id)
        return _base_model(base, model_id) if base else None
    own = await owned_model(session, catalog, organization, model_id)
    if own is not None:
        return own
    owner = await session.scalar(
        select(Organization)
        .join(CheckpointPermission, CheckpointPermission.organization_id == Organization.id)
        .where(CheckpointPermission.model_id == model_id, CheckpointPermission.grantee_id == organization.id)
    )
    return await owned_model(session, catalog, owner, model_id) if owner is not None else None


async def owned_model(
    session: AsyncSession, catalog: Catalog, organization: Organization, model_id: str
) -> ServedModel | None:
    """The organisation's own fine-tuned model or checkpoint called `model_id`, or None."""
    job = await session.scalar(
        select(FineTuningJob).where(
            FineTuningJob.fine_tuned_model == model_id,
            FineTuningJob.organization_id == organization.id,
            FineTuningJob.status == "succeeded",
            FineTuningJob.model_deleted_at.is_(None),
        )
    )
    if job is not None:
        base = catalog.resolve(job.base_model)
        return _job_model(job, base, organization) if base else None
    row = (
        await session.execute(
            select(FineTuningJobCheckpoint, FineTuningJob)
            .join(FineTuningJob, FineTuningJob.id == FineTuningJobCheckpoint.job_id)
            .where(
                FineTuningJobCheckpoint.fine_tuned_model_checkpoint == model_id,
                FineTuningJob.organization_id == organization.id,
            )
        )
    ).first()
    if row is None:
        return None
    checkpoint, job = row
    base = catalog.resolve(job.base_model)
    return _checkpoint_model(checkpoint, base, organization) if base else None


async def list_models(session: AsyncSession, catalog: Catalog, organization: Organization) -> list[ServedModel]:
    """Catalogue base models, then the organisation's fine-tuned models and checkpoints, newest first."""
    models = [_base_model(m, m.name) for m in catalog.models]
    jobs = list(
        await session.scalars(
            select(FineTuningJob)
            .where(
                FineTuningJob.organization_id == organization.id,
                FineTuningJob.status == "succeeded",
                FineTuningJob.model_deleted_at.is_(None),
            )
            .order_by(FineTuningJob.seq.desc())
        )
    )
    for job in jobs:
        base = catalog.resolve(job.base_model)
        if base:
            models.append(_job_model(job, base, organization))
    rows = await session.execute(
        select(FineTuningJobCheckpoint, FineTuningJob)
        .join(FineTuningJob, FineTuningJob.id == FineTuningJobCheckpoint.job_id)
        .where(FineTuningJob.organization_id == organization.id)
        .order_by(FineTuningJobCheckpoint.seq.desc())
    )
    for checkpoint, job in rows:
        base = catalog.resolve(job.base_model)
        if base:
            models.append(_checkpoint_model(checkpoint, base, organization))
    return models + await shared_models(session, catalog, organization)


async def shared_models(session: AsyncSession, catalog: Catalog, organization: Organization) -> list[ServedModel]:
    """Models other organisations shared with this one and still serve, newest grant first."""
    grants = await session.execute(
        select(CheckpointPermission.model_id, Organization)
        .join(Organization, Organization.id == CheckpointPermission.organization_id)
        .where(CheckpointPermission.grantee_id == organization.id)
        .order_by(CheckpointPermission.seq.desc())
    )
    models = []
    for model_id, owner in grants.all():
        served = await owned_model(session, catalog, owner, model_id)
        if served is not None:
            models.append(served)
    return models
