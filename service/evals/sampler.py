"""Sampling a model the organisation may call, through its inference server: for model graders
and for the `completions` data source of eval runs. The same mapping as the API's gateway
(`service.served_models`): the client's id never reaches vLLM, the adapter's storage prefix does."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog import load_catalog
from service.db.models import Organization
from service.graders import GraderConfigError, Sampled, SamplerError, Usage
from service.served_models import ServedModel, resolve_model
from service.settings import Settings


class GatewaySampler:
    """A `service.graders.Sampler` for one organisation."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        http: httpx.AsyncClient,
        organization: Organization,
        *,
        param: str = "grader.model",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.http = http
        self.organization = organization
        self.param = param
        self._served: dict[str, ServedModel] = {}

    async def resolve(self, model: str) -> ServedModel:
        served = self._served.get(model)
        if served is None:
            async with self.sessionmaker() as session:
                served = await resolve_model(session, load_catalog(self.settings), self.organization, model)
            if served is None:
                raise GraderConfigError(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    param=self.param,
                    code="model_not_found",
                )
            self._served[model] = served
        return served

    async def check_model(self, model: str) -> None:
        await self.resolve(model)

    async def sample(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Sampled:
        served = await self.resolve(model)
        base_url = self.settings.inference_urls.get(served.base.name)
        if base_url is None:
            raise SamplerError(f"No inference server serves base model `{served.base.name}`.")
        body = {**params, "model": served.adapter or served.base.name, "messages": messages, "stream": False}
        api_key = getattr(self.settings, "inference_api_key", None)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = await self.http.post(base_url.rstrip("/") + "/v1/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as error:
            raise SamplerError(f"The inference server for `{served.base.name}` is not reachable ({error}).") from None
        if response.status_code >= 400:
            raise SamplerError(f"The inference server answered {response.status_code}: {response.text[:300]}")
        try:
            payload = response.json()
            message = payload["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise SamplerError("The inference server's answer is not a chat completion.") from None
        usage = payload.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return Sampled(
            text=message.get("content") or "",
            refusal=message.get("refusal"),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
                cached_tokens=cached,
            ),
        )
