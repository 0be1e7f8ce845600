"""The one place where errors become HTTP: OpenAI's envelope with the right status.

`{"error": {"message", "type", "param", "code"}}` for every failure, including the framework's
own (unknown route, wrong method, malformed query) and unexpected crashes (500, logged).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.errors import FtserveError, ServiceUnavailableError

log = logging.getLogger("ftserve.api")
RETRY_AFTER_S = "5"


class BodyTimeoutError(FtserveError):
    """The client stopped sending its request body (`body_idle_timeout_s`)."""

    status = 408
    type = "invalid_request_error"


class ClientDisconnected(Exception):
    """The client went away before its request body arrived; nobody is left to answer."""


def pool_exhausted() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The server is busy: no database connection was free in time. Retry shortly.", code="server_busy"
    )


def envelope_message(exc: FtserveError, *, close: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ASGI start and body messages of `exc`'s envelope, for code that runs outside Litestar's
    handlers (the edge middleware). `close` asks the server to drop the connection afterwards,
    for a refusal sent before the client's body was read."""
    body = json.dumps(exc.envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 503:
        headers.append((b"retry-after", RETRY_AFTER_S.encode()))
    if close:
        headers.append((b"connection", b"close"))
    start = {"type": "http.response.start", "status": exc.status, "headers": headers}
    return start, {"type": "http.response.body", "body": body, "more_body": False}


_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


def _envelope(
    status: int, message: str, *, type_: str, param: str | None = None, code: str | None = None
) -> Response[Any]:
    headers = {}
    if status == 409:
        headers["x-should-retry"] = "false"
    if status == 503:
        headers["retry-after"] = RETRY_AFTER_S  # the SDKs honour it (up to 60 s)
    return Response(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def domain_error_handler(_: Request[Any, Any, Any], exc: FtserveError) -> Response[Any]:
    if exc.status >= 500:
        log.error("ftserve error: %s", exc.message)
    return _envelope(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code)


def validation_error_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's own 400s (bad query value, malformed JSON body, missing field)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    param = first.get("key") or None
    detail = first.get("message")
    message = f"Invalid value for '{param}': {detail}" if param and detail else exc.detail
    return _envelope(400, message, type_="invalid_request_error", param=param)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return unexpected_error_handler(request, exc)
    message = f"Invalid URL ({request.method} {request.url.path})" if isinstance(exc, NotFoundException) else exc.detail
    return _envelope(status, message, type_=_TYPES.get(status, "invalid_request_error"))


def pool_timeout_handler(request: Request[Any, Any, Any], _: PoolTimeoutError) -> Response[Any]:
    log.warning("database pool exhausted on %s %s", request.method, request.url.path)
    return domain_error_handler(request, pool_exhausted())


def disconnect_handler(_: Request[Any, Any, Any], __: ClientDisconnected) -> Response[Any]:
    # The edge middleware logs the request once, at info; this answer reaches no one.
    return Response(b"", status_code=400)


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _envelope(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "The server had an error while processing your request.",
        type_="server_error",
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    FtserveError: domain_error_handler,
    PoolTimeoutError: pool_timeout_handler,
    ClientDisconnected: disconnect_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
