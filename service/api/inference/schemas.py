"""What `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings` answer, for the OpenAPI document.

The gateway relays vLLM's answers as they are (renaming only `model`), so these models
document the shape rather than validate it; they follow OpenAI's `ChatCompletion` and
`Completion`. A streamed answer is `text/event-stream`: `data: {chunk}` lines (the same
objects with `delta` instead of `message`, `object` ending in `.chunk`), then `data: [DONE]`.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar.openapi import ResponseSpec
from pydantic import BaseModel


class Usage(BaseModel):
    prompt_tokens: int
    """Tokens of the prompt."""
    completion_tokens: int
    """Tokens generated."""
    total_tokens: int
    """Both."""


class ToolCallFunction(BaseModel):
    name: str
    """The function the model calls."""
    arguments: str
    """Its arguments, as the JSON text the model wrote."""


class ToolCall(BaseModel):
    id: str
    """Pass it back as `tool_call_id` with the tool's answer."""
    type: Literal["function"]
    function: ToolCallFunction


class ChatMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    """The answer's text; null when the model only called tools."""
    tool_calls: list[ToolCall] | None = None
    """The tools the model called (with `tools` and a catalogue `tool_call_parser`)."""


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "function_call"] | None
    """`stop` at a natural end or a stop sequence, `length` at `max_tokens`."""
    logprobs: dict[str, Any] | None = None
    """Token log-probabilities when `logprobs` was asked for."""


class ChatCompletion(BaseModel):
    """OpenAI's `ChatCompletion`; `model` is the id the client asked for (`ft:…` included)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    """Unix seconds."""
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"] | None
    logprobs: dict[str, Any] | None = None


class Completion(BaseModel):
    """OpenAI's `Completion` (the legacy text endpoint)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    """Tokens of the input."""
    total_tokens: int
    """The same: an embedding generates nothing."""


class Embedding(BaseModel):
    index: int
    """The position of its text in `input`."""
    object: Literal["embedding"]
    embedding: list[float] | str
    """The vector; base64 of little-endian float32s with `encoding_format: "base64"`."""


class CreateEmbeddingResponse(BaseModel):
    """OpenAI's answer of `/v1/embeddings`."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def answer(model: type[BaseModel], what: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=model,
        description=f"The {what}; with `stream: true`, `text/event-stream` chunks of it, then `data: [DONE]`.",
        generate_examples=False,
    )
