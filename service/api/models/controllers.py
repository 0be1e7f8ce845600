"""HTTP handlers of `/v1/models`."""

from __future__ import annotations

import asyncio

from litestar import Controller, delete, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.checkpoints.controllers import announce_access_change
from service.api.checkpoints.services import TOPIC
from service.api.models.schemas import ModelDeleted, ModelList, ModelObject
from service.api.openapi_docs import ERROR_RESPONSES
from service.catalog import load_catalog
from service.db.models import Organization
from service.errors import InvalidRequestError, NotFoundError
from service.fine_tuning import states
from service.invalidation import invalidations
from service.keys import PermissionDeniedError
from service.served_models import ServedModel, list_models, resolve_model
from service.ttl_cache import TtlCache

SERVED = TtlCache[tuple[str, str], ServedModel](ttl_s=2)
"""(organisation, model id) → where it is served: most completion requests skip the lookup.
A deletion or a revoked checkpoint permission drops the model's entries in every API process at
once (`model_access` on the invalidation channel); read with `invalidations.max_age_s`, so that
without a live subscription an entry lasts a second at most. Misses are never cached."""
invalidations.on(TOPIC, lambda model: SERVED.discard_where(lambda key, _: model in (None, key[1])))


def model_not_found(model: str) -> NotFoundError:
    return NotFoundError(
        f"The model `{model}` does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


async def find_model(session: AsyncSession, state: State, organization: Organization, model: str) -> ServedModel:
    served = SERVED.get((organization.id, model), max_age_s=invalidations.max_age_s(SERVED.ttl_s))
    if served is not None:
        return served
    served = await resolve_model(session, load_catalog(state.settings), organization, model)
    if served is None:
        raise model_not_found(model)
    SERVED.put((organization.id, model), served)
    return served


class ModelController(Controller):
    path = "/v1/models"
    tags = ["Models"]

    @get(responses=ERROR_RESPONSES, operation_id="listModels", summary="List models")
    async def list_models(
        self, db_session: NamedDependency[AsyncSession], organization: NamedDependency[Organization], state: State
    ) -> ModelList:
        models = await list_models(db_session, load_catalog(state.settings), organization)
        return ModelList(object="list", data=[ModelObject.from_served(m) for m in models])

    @get("/{model:str}", responses=ERROR_RESPONSES, operation_id="retrieveModel", summary="Retrieve a model")
    async def retrieve_model(
        self,
        model: FromPath[str],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> ModelObject:
        return ModelObject.from_served(await find_model(db_session, state, organization, model))

    @delete("/{model:str}", responses=ERROR_RESPONSES, operation_id="deleteModel",
            summary="Delete a fine-tuned model", status_code=200)  # fmt: skip
    async def delete_model(
        self,
        model: FromPath[str],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> ModelDeleted:
        """The tuned model stops being served at once; its adapter's bytes go after the row."""
        served = await find_model(db_session, state, organization, model)
        if served.owned_by != organization.name and served.adapter is not None:
            raise PermissionDeniedError(
                f"`{model}` is shared with organization {organization.name} by {served.owned_by}; only its owner "
                "may delete it.",
                code="insufficient_permissions",
            )
        if served.adapter is None or served.job_id is None or ":ckpt-step-" in served.id:
            raise InvalidRequestError(
                f"Only fine-tuned models can be deleted; `{model}` is not one.",
                param="model",
                code="model_not_deletable",
            )
        await states.mark_model_deleted(db_session, served.job_id)
        await announce_access_change(state, model)  # organisations it was shared with lose it too
        await asyncio.to_thread(state.storage.delete_prefix, served.adapter)
        return ModelDeleted(id=model, object="model", deleted=True)
