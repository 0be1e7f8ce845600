"""Wire shapes of checkpoint permissions, as OpenAI's `checkpoint.permission`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.db.models import CheckpointPermission


class CreatePermissionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_ids: list[str] = Field(min_length=1, max_length=100)
    """Organisations (by name) to share the model with; ftserve's organisations are OpenAI's projects."""


class PermissionObject(BaseModel):
    id: str
    """`cp_…`."""
    object: Literal["checkpoint.permission"]
    created_at: int
    project_id: str
    """The name of the organisation the model is shared with."""

    @classmethod
    def from_row(cls, row: CheckpointPermission, project_id: str) -> PermissionObject:
        return cls(id=row.id, object="checkpoint.permission", created_at=row.created_at, project_id=project_id)


class PermissionList(BaseModel):
    object: Literal["list"]
    data: list[PermissionObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, items: list[PermissionObject], has_more: bool) -> PermissionList:
        return cls(object="list", data=items, has_more=has_more, first_id=items[0].id if items else None,
                   last_id=items[-1].id if items else None)  # fmt: skip


class PermissionDeleted(BaseModel):
    id: str
    object: Literal["checkpoint.permission"]
    deleted: bool
