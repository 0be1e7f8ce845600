"""HTTP handlers of `/v1/chat/completions` and `/v1/completions`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.inference.proxy import forward, unavailable
from service.api.inference.schemas import ChatCompletion, Completion, answer
from service.api.models.controllers import find_model
from service.api.openapi_docs import ERROR_RESPONSES
from service.db.models import Organization
from service.errors import InvalidRequestError


def _require(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> None:
    if name not in body:
        raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(body[name], kind):
        raise InvalidRequestError(f"Invalid type for '{name}'.", param=name)


async def _complete(
    path: str, body: dict[str, Any], session: AsyncSession, organization: Organization, state: State
) -> Response[Any] | Stream:
    served = await find_model(session, state, organization, body["model"])
    await session.close()  # no database work while the model generates
    base_url = state.settings.inference_urls.get(served.base.name)
    if base_url is None:
        raise unavailable(served.base.name)
    return await forward(state.http, base_url, path, body, served, state.settings.inference_api_key)


class CompletionController(Controller):
    tags = ["Inference"]

    @post("/v1/chat/completions", responses={200: answer(ChatCompletion, "completion"), **ERROR_RESPONSES},
          operation_id="createChatCompletion",
          summary="Create a chat completion", status_code=200)  # fmt: skip
    async def chat_completions(
        self,
        data: JSONBody[dict[str, Any]],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> Response[Any] | Stream:
        _require(data, "model", str)
        _require(data, "messages", list)
        return await _complete("/v1/chat/completions", data, db_session, organization, state)

    @post("/v1/completions", responses={200: answer(Completion, "completion"), **ERROR_RESPONSES},
          operation_id="createCompletion",
          summary="Create a completion", status_code=200)  # fmt: skip
    async def completions(
        self,
        data: JSONBody[dict[str, Any]],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> Response[Any] | Stream:
        _require(data, "model", str)
        _require(data, "prompt", (str, list))
        return await _complete("/v1/completions", data, db_session, organization, state)
