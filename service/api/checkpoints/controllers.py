"""HTTP handlers of `/v1/fine_tuning/checkpoints/{checkpoint}/permissions` (admin keys only)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.checkpoints.schemas import CreatePermissionRequest, PermissionDeleted, PermissionList, PermissionObject
from service.api.checkpoints.services import TOPIC, PermissionService
from service.api.deps import require_admin
from service.api.openapi_docs import ERROR_RESPONSES, ErrorResponse
from service.catalog import load_catalog
from service.db.models import Organization
from service.invalidation import invalidations, publish

log = logging.getLogger("ftserve.api")
ADMIN_ERROR_RESPONSES = {
    **ERROR_RESPONSES,
    403: ResponseSpec(data_container=ErrorResponse, description="Not an admin key", generate_examples=False),
}


def _service(request: Request[Any, Any, Any], session: AsyncSession, state: State) -> PermissionService:
    """The caller's organisation's grants; 403 unless the key is one of its admin keys."""
    identity = require_admin(request)
    return PermissionService(session, load_catalog(state.settings), identity.organization)


async def announce_access_change(state: State, model_id: str) -> None:
    """Drop every API process's cached lookups of `model_id`: this one at once, the others through
    the invalidation channel (a process that misses it re-reads within a second, see
    `service.invalidation`)."""
    invalidations.dispatch(f"{TOPIC}:{model_id}")
    if not state.settings.redis_url:
        return
    try:
        await publish(state.settings.redis_url, TOPIC, model_id)
    except (RedisError, OSError) as exc:  # no live subscription anywhere: caches hold 1 s at most
        log.warning("could not announce the access change of %s: %s", model_id, exc)


class CheckpointPermissionController(Controller):
    path = "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint:str}/permissions"
    tags = ["Fine-tuning"]

    @post(responses=ADMIN_ERROR_RESPONSES, operation_id="createFineTuningCheckpointPermission",
          summary="Share a fine-tuned model or checkpoint with organizations", status_code=200)  # fmt: skip
    async def create_permissions(
        self,
        fine_tuned_model_checkpoint: FromPath[str],
        data: JSONBody[CreatePermissionRequest],
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> PermissionList:
        granted = await _service(request, db_session, state).grant(fine_tuned_model_checkpoint, data.project_ids)
        # A grant needs no invalidation: a lookup that found nothing is never cached.
        return PermissionList.of([PermissionObject.from_row(row, name) for row, name in granted], has_more=False)

    @get(responses=ADMIN_ERROR_RESPONSES, operation_id="listFineTuningCheckpointPermissions",
         summary="List a fine-tuned model's or checkpoint's permissions")  # fmt: skip
    async def list_permissions(
        self,
        fine_tuned_model_checkpoint: FromPath[str],
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
        project_id: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 10,
        order: FromQuery[Literal["ascending", "descending"]] = "descending",
    ) -> PermissionList:
        page, names = await _service(request, db_session, state).list(
            fine_tuned_model_checkpoint, project_id=project_id, after=after, limit=limit, order=order
        )
        items = [PermissionObject.from_row(row, names.get(row.grantee_id, "")) for row in page.items]
        return PermissionList.of(items, page.has_more)

    @delete("/{permission_id:str}", responses=ADMIN_ERROR_RESPONSES,
            operation_id="deleteFineTuningCheckpointPermission", summary="Revoke a permission",
            status_code=200)  # fmt: skip
    async def delete_permission(
        self,
        fine_tuned_model_checkpoint: FromPath[str],
        permission_id: FromPath[str],
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> PermissionDeleted:
        await _service(request, db_session, state).revoke(fine_tuned_model_checkpoint, permission_id)
        await announce_access_change(state, fine_tuned_model_checkpoint)
        return PermissionDeleted(id=permission_id, object="checkpoint.permission", deleted=True)
