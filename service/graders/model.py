"""`score_model` and `label_model`: a model reads the rendered messages and answers a score or a label.

The grader asks for structured output (a JSON schema the inference server enforces while it
decodes, vLLM's guided decoding through `response_format`), so the answer always parses:
`{"result": <number in range>}` or `{"result": <one of the labels>}`. The caller supplies a
`Sampler`, which knows where a model is served (the API's gateway, or a trainer's own client).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.graders.errors import GraderConfigError, SampleFailure
from service.graders.template import check_template, render

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text")


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cached_tokens += other.cached_tokens


@dataclass
class Sampled:
    text: str
    usage: Usage = field(default_factory=Usage)
    refusal: str | None = None


class SamplerError(Exception):
    """The model could not be sampled (server down, refused request); `details` says why."""


class Sampler(Protocol):
    async def check_model(self, model: str) -> None:
        """Raise a `GraderConfigError` (400) when the caller may not call `model`."""

    async def sample(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Sampled:
        """One chat completion; raise `SamplerError` when the model cannot answer."""


def check_messages(messages: Any, param: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise GraderConfigError(f"`{param}` must be a non-empty list of messages.", param=param)
    for i, message in enumerate(messages):
        where = f"{param}[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise GraderConfigError(f"`{where}.role` must be one of {', '.join(ROLES)}.", param=where)
        for j, text in enumerate(_texts(message.get("content"), f"{where}.content")):
            check_template(text, f"{where}.content[{j}]")


def _texts(content: Any, param: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    parts = content if isinstance(content, list) else [content]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise GraderConfigError(
                f"`{param}`: only text content (a string, `input_text` or `output_text`) is supported here.",
                param=param,
            )
    return texts


def render_messages(messages: list[dict[str, Any]], context: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages with every template filled (`developer` becomes `system` for the server)."""
    rendered = []
    for message in messages:
        text = "".join(render(t, context) for t in _texts(message["content"], "input"))
        role = "system" if message["role"] == "developer" else message["role"]
        rendered.append({"role": role, "content": text})
    return rendered


def sampling_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI's grader `sampling_params` as chat-completion fields."""
    params = params or {}
    out: dict[str, Any] = {"temperature": params.get("temperature", 0.0)}
    for name in ("top_p", "seed"):
        if params.get(name) is not None:
            out[name] = params[name]
    tokens = params.get("max_completions_tokens") or params.get("max_completion_tokens")
    out["max_tokens"] = tokens or 256
    return out


def score_schema(low: float, high: float) -> dict[str, Any]:
    return {"type": "object", "properties": {"result": {"type": "number", "minimum": low, "maximum": high}},
            "required": ["result"], "additionalProperties": False}  # fmt: skip


def label_schema(labels: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"result": {"type": "string", "enum": labels}},
            "required": ["result"], "additionalProperties": False}  # fmt: skip


async def ask(
    sampler: Sampler, grader: dict[str, Any], context: dict[str, Any], schema: dict[str, Any]
) -> tuple[Any, Usage]:
    """The model's `result`, under `schema`; what fails is this sample's model-grader error."""
    messages = render_messages(grader["input"], context)
    params = sampling_params(grader.get("sampling_params"))
    json_schema = {"name": "grade", "schema": schema, "strict": True}
    params["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    try:
        answer = await sampler.sample(grader["model"], messages, params)
    except SamplerError as error:
        raise SampleFailure("model_grader_server_error", str(error)) from None
    if answer.refusal:
        raise SampleFailure("model_grader_refusal_error", answer.refusal)
    try:
        result = json.loads(answer.text)["result"]
    except (ValueError, KeyError, TypeError):
        failure = SampleFailure("model_grader_parse_error", f"Unparsable grader answer: {answer.text[:200]!r}")
        failure.usage = answer.usage  # type: ignore[attr-defined]
        raise failure from None
    return result, answer.usage
