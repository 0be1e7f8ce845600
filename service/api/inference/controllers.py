"""HTTP handlers of `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.

A catalogue entry is either a generative model or an embeddings model (`task`); each serves only
its own endpoints, and a request for the other kind is a 400 before it reaches a server."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.inference.proxy import forward, not_served
from service.api.inference.schemas import ChatCompletion, Completion, CreateEmbeddingResponse, answer
from service.api.models.controllers import find_model
from service.api.openapi_docs import ERROR_RESPONSES
from service.db.models import Organization
from service.errors import InvalidRequestError
from service.served_models import ServedModel


def _require(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> None:
    if name not in body:
        raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
    if not isinstance(body[name], kind):
        raise InvalidRequestError(f"Invalid type for '{name}'.", param=name)


def _check_task(served: ServedModel, path: str) -> None:
    """An embeddings model answers `/v1/embeddings` only, and only it does."""
    if path == "/v1/embeddings" and served.base.task != "embed":
        raise InvalidRequestError(
            f"The model `{served.id}` does not support embeddings; use an embeddings model of the catalogue.",
            param="model", code="model_not_supported",
        )  # fmt: skip
    if path != "/v1/embeddings" and served.base.task == "embed":
        raise InvalidRequestError(
            f"The model `{served.id}` is an embeddings model: call /v1/embeddings with it.",
            param="model", code="model_not_supported",
        )  # fmt: skip


async def _complete(
    path: str, body: dict[str, Any], session: AsyncSession, organization: Organization, state: State
) -> Response[Any] | Stream:
    served = await find_model(session, state, organization, body["model"])
    await session.close()  # no database work while the model generates
    _check_task(served, path)
    base_url = state.settings.inference_urls.get(served.base.name)
    if base_url is None:
        raise not_served(served.base.name)
    return await forward(state.http, base_url, path, body, served, state.settings.inference_api_key,
                         completions_usage=path != "/v1/embeddings")  # fmt: skip


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


class EmbeddingController(Controller):
    tags = ["Embeddings"]

    @post("/v1/embeddings", operation_id="createEmbedding", summary="Create embeddings", status_code=200,
          responses={200: ResponseSpec(data_container=CreateEmbeddingResponse, generate_examples=False,
                                       description="One embedding per input text, in order."),
                     **ERROR_RESPONSES})  # fmt: skip
    async def embeddings(
        self,
        data: JSONBody[dict[str, Any]],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
    ) -> Response[Any]:
        """`model`: a catalogue embeddings model (`task: embed`); `input`: a string, a list of strings or of
        token lists; `encoding_format` (`float` or `base64`) and the rest go to the server as sent."""
        _require(data, "model", str)
        _require(data, "input", (str, list))
        if isinstance(data["input"], list) and not data["input"]:
            raise InvalidRequestError("'input' must not be empty.", param="input")
        body = {k: v for k, v in data.items() if k != "stream"}  # an embedding is never streamed
        answer = await _complete("/v1/embeddings", body, db_session, organization, state)
        assert isinstance(answer, Response)
        return answer
