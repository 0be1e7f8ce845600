"""Wire shapes of `/v1/models`, as OpenAI's `Model`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from service.served_models import ServedModel


class ModelObject(BaseModel):
    id: str
    """The id to pass as `model`."""
    object: Literal["model"]
    created: int
    """Unix time (s) the model was created (0 for catalogue base models)."""
    owned_by: str
    """`system` for base models, else the owning organisation's name."""

    @classmethod
    def from_served(cls, model: ServedModel) -> ModelObject:
        return cls(id=model.id, object="model", created=model.created, owned_by=model.owned_by)


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"]
    deleted: bool
