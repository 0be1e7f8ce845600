"""Forwarding a completion request to the inference server of the model's base model.

The gateway authenticates and authorises, renames the model to what the server knows (the
base model's name, or the adapter's storage prefix for its LoRA resolver), forwards the body
untouched otherwise, and renames the model back in the answer, chunk by chunk when streamed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Response
from litestar.response import Stream

from service.errors import FtserveError, InvalidRequestError, ServiceUnavailableError
from service.metrics import TOKENS_SERVED, UPSTREAM_ERRORS, UPSTREAM_LATENCY
from service.served_models import ServedModel
from service.usage import count_usage


def server_name(served: ServedModel) -> str:
    """What the inference server calls the model: its base name, or the adapter's storage prefix."""
    return served.adapter or served.base.name


class UpstreamError(FtserveError):
    """An error answer of the inference server, passed on with its status."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):  # older servers: {"object": "error", "message": …}
            error = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(str(error.get("message") or "The inference server refused the request."),
                         param=error.get("param"), code=error.get("code"))  # fmt: skip
        self.status = status
        self.type = str(error.get("type") or ("invalid_request_error" if status < 500 else "server_error"))


def not_served(base: str) -> ServiceUnavailableError:
    """The base model is in the catalogue, but no inference server runs for it: retrying won't help."""
    return ServiceUnavailableError(
        f"No inference server runs for base model `{base}`: its catalogue entry has `serve: false`, its server "
        "could not load the model (its log says why), or this deployment names no server for it "
        f"(FTSERVE_INFERENCE_URLS). `ftserve up` starts one for every entry marked `serve`; elsewhere, run "
        f"`ftserve inference --base-model {base}`.",
        code="model_not_served",
    )


def unavailable(base: str) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"The inference server for base model `{base}` is not reachable; retry shortly.", code="model_unavailable"
    )


def _rename(payload: dict[str, Any], client_model: str) -> dict[str, Any]:
    if "model" in payload:
        payload["model"] = client_model
    return payload


def upstream_headers(api_key: str | None) -> dict[str, str]:
    """What the gateway sends an inference server besides the body: the key it requires (the
    caller's own key is never passed on)."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


async def forward(
    http: httpx.AsyncClient,
    base_url: str,
    path: str,
    body: dict[str, Any],
    served: ServedModel,
    api_key: str | None = None,
    *,
    completions_usage: bool = True,
) -> Response[Any] | Stream:
    """POST `body` to the server with the inference key, and answer as OpenAI would, streamed
    when `stream` is true. `completions_usage`: count the answer's tokens in the organisation's
    completions usage (not for embeddings, which OpenAI reports apart)."""
    upstream = {**body, "model": server_name(served)}
    wants_usage = usage_requested(body)
    if body.get("stream"):
        # Always ask for the final usage chunk, so that streamed answers are counted too; it is
        # taken out again below when the client did not ask for it.
        upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    request = http.build_request("POST", base_url.rstrip("/") + path, json=upstream, headers=upstream_headers(api_key))
    started = time.perf_counter()
    try:
        response = await http.send(request, stream=True)
    except httpx.HTTPError:
        UPSTREAM_ERRORS.labels(model=served.base.name, kind="unreachable").inc()
        raise unavailable(served.base.name) from None
    UPSTREAM_LATENCY.labels(model=served.base.name).observe(time.perf_counter() - started)
    if response.status_code >= 400:
        UPSTREAM_ERRORS.labels(model=served.base.name, kind=str(response.status_code)).inc()
        raw = await response.aread()
        await response.aclose()
        if response.status_code in (502, 503, 504):
            raise unavailable(served.base.name)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"message": raw.decode(errors="replace")[:500]}
        if response.status_code == 401:
            # The server refused the gateway's key: a deployment fault, never the caller's.
            raise unavailable(served.base.name)
        if response.status_code == 404:
            # The server did not find the adapter (deleted meanwhile, or its bytes are gone).
            raise InvalidRequestError(f"The model `{served.id}` cannot be loaded.", param="model",
                                      code="model_not_found")  # fmt: skip
        raise UpstreamError(response.status_code, parsed)
    if not body.get("stream"):
        try:
            payload = json.loads(await response.aread())
        finally:
            await response.aclose()
        if isinstance(payload, dict):
            if completions_usage:
                count_usage(served.id, payload.get("usage"))
            count_tokens(served, payload.get("usage"))
        return Response(_rename(payload, served.id), media_type="application/json")
    return Stream(
        _relay_events(response, served, wants_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def usage_requested(body: dict[str, Any]) -> bool:
    """Whether a streamed request asked for the final usage chunk itself."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def count_tokens(served: ServedModel, usage: Any) -> None:
    """Add an answer's `usage` to the gateway's token counters (labelled by base model)."""
    if isinstance(usage, dict):
        for kind in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(kind), int):
                TOKENS_SERVED.labels(model=served.base.name, kind=kind.removesuffix("_tokens")).inc(usage[kind])


def client_chunk(chunk: dict[str, Any], wants_usage: bool) -> dict[str, Any] | None:
    """A streamed chunk as the client asked for it: without the usage the gateway asked for on its own
    behalf (the final usage-only chunk dropped, `usage: null` removed), or None to drop it.

    Example:
        >>> client_chunk({"choices": [], "usage": {"total_tokens": 3}}, False) is None
        True
    """
    if wants_usage or "usage" not in chunk:
        return chunk
    if chunk.get("usage") is not None and not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


async def _relay_events(
    response: httpx.Response, served: ServedModel, wants_usage: bool = True
) -> AsyncIterator[bytes]:
    """Server-sent events as they arrive, model renamed; a failure mid-stream becomes an `error` event.
    The last `usage` seen (the final chunk's, when the stream asked for it) is counted at the end."""
    usage: Any = None
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                yield b"data: [DONE]\n\n"
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if isinstance(chunk, dict):
                chunk = _rename(chunk, served.id)
                usage = chunk.get("usage") or usage
                chunk = client_chunk(chunk, wants_usage)
                if chunk is None:
                    continue
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    except httpx.HTTPError:
        UPSTREAM_ERRORS.labels(model=served.base.name, kind="interrupted").inc()
        error = {"message": "The inference server stopped in the middle of the answer.", "type": "server_error",
                 "param": None, "code": "stream_interrupted"}  # fmt: skip
        yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
    finally:
        count_usage(served.id, usage)
        count_tokens(served, usage)
        await response.aclose()
