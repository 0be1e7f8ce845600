"""Checkpoint permissions: an organisation shares one of its fine-tuned models or checkpoints.

OpenAI grants a checkpoint to projects; ftserve has organisations where OpenAI has projects, so a
`project_id` is the name of an organisation (what `ftserve keys create --org NAME` made, the
`{org}` of `ft:{base}:{org}:…`). A grant lets that organisation call the model, see it in its
`/v1/models` (owned by the granting organisation) and fine-tune from it. Only the owner's admin
keys manage grants (the HTTP layer checks the key).

A revocation is committed, then announced on the invalidation channel under `TOPIC` with the
model id, so that every API process drops what it cached about that model at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.pagination import Page, cursor_page
from service.catalog import Catalog
from service.db.models import CheckpointPermission, Organization
from service.errors import InvalidRequestError, NotFoundError
from service.ids import new_id, now_s
from service.served_models import ServedModel, owned_model

TOPIC = "model_access"
"""Invalidation topic: `model_access:{model id}` drops every cached lookup of that model."""
ID_PREFIX = "cp_"


@dataclass
class PermissionService:
    """The grants of one organisation's models."""

    session: AsyncSession
    catalog: Catalog
    organization: Organization

    async def shared_model(self, model_id: str) -> ServedModel:
        """The organisation's own fine-tuned model or checkpoint; anything else is a 404."""
        served = None
        if model_id.startswith("ft:"):
            served = await owned_model(self.session, self.catalog, self.organization, model_id)
        if served is None or served.adapter is None:
            raise NotFoundError(
                f"No fine-tuned model or checkpoint `{model_id}` in organization {self.organization.name}.",
                param="fine_tuned_model_checkpoint",
                code="model_not_found",
            )
        return served

    async def _grantee(self, name: str) -> Organization:
        org = await self.session.scalar(select(Organization).where(Organization.name == name))
        if org is None:
            raise InvalidRequestError(
                f"Project {name!r} does not exist; project_ids name organizations on this server.",
                param="project_ids",
                code="invalid_project_id",
            )
        if org.id == self.organization.id:
            raise InvalidRequestError(
                f"Organization {name!r} owns this model already; share it with another one.", param="project_ids"
            )
        return org

    async def grant(self, model_id: str, project_ids: list[str]) -> list[tuple[CheckpointPermission, str]]:
        """One permission per project (the existing one when it was granted before), in order."""
        await self.shared_model(model_id)
        grantees = [await self._grantee(name) for name in dict.fromkeys(project_ids)]
        out = []
        for org in grantees:
            row = await self._existing(model_id, org.id)
            if row is None:
                row = CheckpointPermission(
                    id=new_id(ID_PREFIX), organization_id=self.organization.id, model_id=model_id,
                    grantee_id=org.id, created_at=now_s(),
                )  # fmt: skip
                self.session.add(row)
                try:
                    await self.session.commit()
                except IntegrityError:  # granted at the same moment by another request
                    await self.session.rollback()
                    row = await self._existing(model_id, org.id)
                    if row is None:
                        raise
            out.append((row, org.name))
        return out

    async def _existing(self, model_id: str, grantee_id: str) -> CheckpointPermission | None:
        return await self.session.scalar(
            select(CheckpointPermission).where(
                CheckpointPermission.model_id == model_id, CheckpointPermission.grantee_id == grantee_id
            )
        )

    async def list(
        self, model_id: str, *, project_id: str | None, after: str | None, limit: int, order: str
    ) -> tuple[Page[CheckpointPermission], dict[str, str]]:
        """A page of the model's grants, and each grantee's name by organisation id."""
        await self.shared_model(model_id)
        query = select(CheckpointPermission).where(
            CheckpointPermission.organization_id == self.organization.id, CheckpointPermission.model_id == model_id
        )
        if project_id is not None:
            query = query.where(
                CheckpointPermission.grantee_id.in_(select(Organization.id).where(Organization.name == project_id))
            )
        page = await cursor_page(self.session, query, CheckpointPermission, limit=limit, after=after,
                                 order="asc" if order == "ascending" else "desc")  # fmt: skip
        ids = {row.grantee_id for row in page.items}
        names = dict((await self.session.execute(select(Organization.id, Organization.name).where(
            Organization.id.in_(ids)))).tuples().all()) if ids else {}  # fmt: skip
        return page, names

    async def revoke(self, model_id: str, permission_id: str) -> None:
        """Delete the grant; the caller announces it (`TOPIC`) once this returns."""
        await self.shared_model(model_id)
        result = await self.session.execute(
            delete(CheckpointPermission).where(
                CheckpointPermission.id == permission_id,
                CheckpointPermission.model_id == model_id,
                CheckpointPermission.organization_id == self.organization.id,
            )
        )
        await self.session.commit()
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFoundError.for_object("CheckpointPermission", permission_id, param="permission_id")
