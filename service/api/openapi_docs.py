"""OpenAPI details that the handlers' signatures cannot express (streamed multipart bodies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    """What went wrong, for a person."""
    type: str
    """`invalid_request_error`, `authentication_error`, `server_error`…"""
    param: str | None
    """The request parameter at fault, if any."""
    code: str | None
    """A machine-readable code, if any."""


class ErrorResponse(BaseModel):
    """OpenAI's error envelope, used for every failure."""

    error: ErrorDetail


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorResponse, description=description, generate_examples=False)


ERROR_RESPONSES: dict[int, ResponseSpec] = {
    400: _error("Invalid request"),
    401: _error("Missing or invalid API key"),
    404: _error("No such object"),
    500: _error("Server error"),
}
"""The error responses every `/v1` operation documents."""

UPLOAD_ERROR_RESPONSES: dict[int, Any] = {**ERROR_RESPONSES, 413: _error("File or part too large")}


def _multipart(properties: dict[str, Schema], required: list[str]) -> RequestBody:
    schema = Schema(type=OpenAPIType.OBJECT, properties=properties, required=required)
    return RequestBody(content={"multipart/form-data": OpenAPIMediaType(schema=schema)}, required=True)


_BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


@dataclass
class MULTIPART_FILE_BODY(Operation):
    """`POST /v1/files`: `file`, `purpose`, optional `expires_after[anchor|seconds]`."""

    def __post_init__(self) -> None:
        self.request_body = _multipart(
            {
                "file": _BINARY,
                "purpose": Schema(
                    type=OpenAPIType.STRING,
                    enum=["assistants", "batch", "fine-tune", "vision", "user_data", "evals"],
                ),
                "expires_after[anchor]": Schema(type=OpenAPIType.STRING, enum=["created_at"]),
                "expires_after[seconds]": Schema(type=OpenAPIType.INTEGER, minimum=3600, maximum=2592000),
            },
            ["file", "purpose"],
        )


@dataclass
class MULTIPART_PART_BODY(Operation):
    """`POST /v1/uploads/{upload_id}/parts`: one `data` part."""

    def __post_init__(self) -> None:
        self.request_body = _multipart({"data": _BINARY}, ["data"])
