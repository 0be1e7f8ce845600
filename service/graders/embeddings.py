"""The `cosine` text-similarity metric: embed `input` and `reference`, answer their cosine.

The embeddings come from the catalogue's embeddings model (its first entry with `task: embed`),
through that model's inference server, as the gateway's `/v1/embeddings` reaches it: the
inference key, the catalogue's name for the model. Embeddings models are base models, which
every organisation may call, so no tenant lookup is needed. Without such an entry `cosine` is a
400 (`similarity.check_metric`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from service.catalog import BaseModel, load_catalog
from service.graders.model import SamplerError, Usage
from service.settings import Settings

TIMEOUT_S = 60.0
"""For a client made per call (no shared one was given): a CPU server embeds two texts in well under
a second, but its first request after a start may wait for warm-up."""


@dataclass
class Embedded:
    vectors: list[list[float]]
    """One vector per text, in the order given."""
    usage: Usage = field(default_factory=Usage)


class Embedder(Protocol):
    model: str
    """The catalogue name of the embeddings model, for usage and messages."""

    async def embed(self, texts: list[str]) -> Embedded:
        """The texts' embeddings; raise `SamplerError` when the model cannot answer."""


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of the angle between `a` and `b`, in [-1, 1]; 0.0 when either is all zeros.

    Example:
        >>> cosine([1.0, 0.0], [1.0, 1.0])  # doctest: +ELLIPSIS
        0.7071...
    """
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    if norms == 0.0:
        return 0.0
    # Rounding can carry the cosine of identical vectors a hair past 1.
    return max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(a, b, strict=True)) / norms))


class GatewayEmbedder:
    """An `Embedder` over the inference server of one catalogue embeddings model."""

    def __init__(self, settings: Settings, entry: BaseModel, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.entry = entry
        self.model = entry.name
        self.http = http

    async def embed(self, texts: list[str]) -> Embedded:
        base_url = self.settings.inference_urls.get(self.model)
        if base_url is None:
            raise SamplerError(f"No inference server serves the embeddings model `{self.model}`.")
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        api_key = getattr(self.settings, "inference_api_key", None)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        url = base_url.rstrip("/") + "/v1/embeddings"
        try:
            if self.http is not None:
                response = await self.http.post(url, json=body, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
                    response = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise SamplerError(f"The inference server for `{self.model}` is not reachable ({error}).") from None
        if response.status_code >= 400:
            raise SamplerError(f"The inference server answered {response.status_code}: {response.text[:300]}")
        return _parse(response, len(texts))


def _parse(response: httpx.Response, count: int) -> Embedded:
    try:
        payload = response.json()
        rows = sorted(payload["data"], key=lambda row: row["index"])
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (ValueError, KeyError, TypeError):
        raise SamplerError("The inference server's answer is not a list of embeddings.") from None
    if len(vectors) != count:
        raise SamplerError(f"The inference server answered {len(vectors)} embeddings for {count} texts.")
    usage: dict[str, Any] = payload.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    return Embedded(vectors, Usage(prompt_tokens=prompt, total_tokens=int(usage.get("total_tokens") or prompt)))


def catalog_embedder(settings: Settings, http: httpx.AsyncClient | None = None) -> GatewayEmbedder | None:
    """The embedder of the catalogue's first `task: embed` entry, or None when it has none."""
    entry = load_catalog(settings).embeddings_model()
    return GatewayEmbedder(settings, entry, http) if entry is not None else None


async def cosine_similarity(embedder: Embedder, text: str, reference: str) -> tuple[float, Usage]:
    """The cosine of the two texts' embeddings (one request for both), and the tokens it took."""
    embedded = await embedder.embed([text, reference])
    return cosine(embedded.vectors[0], embedded.vectors[1]), embedded.usage
