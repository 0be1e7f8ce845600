"""The HTTP edge: what every request goes through before Litestar routes and decodes it.

In order:
1. a request id: the client's `X-Request-Id` when it is sane, else a new one; returned in the
   response header and set in the logging context;
2. the key, checked before a single body byte is read: a `/v1` request that carries a key or a
   body is authenticated here, in a database session of its own that is closed at once;
3. the body limit of the route, from `Content-Length` and again while the bytes arrive, with an
   idle timeout between chunks (a stalled client is cut, 408);
4. JSON bodies are read here (they are small) and refused when nested too deeply; the two
   multipart routes stream on to their handlers, which spool the file to disk;
5. one access line per request, at info, a client that went away included.

Refusals sent before the body was read close the connection, so the rest is never read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.api.deps import provide_organization
from service.api.errors import BodyTimeoutError, ClientDisconnected, envelope_message, pool_exhausted
from service.api.middleware.json_depth import MAX_JSON_DEPTH, too_deep
from service.api.multipart import OVERHEAD_BYTES
from service.db.models import Organization
from service.errors import FtserveError, InvalidRequestError, PayloadTooLargeError
from service.ids import random_token
from service.logging_config import REQUEST_ID
from service.settings import Settings
from service.usage import CALLER_ORGANIZATION_ID

access_log = logging.getLogger("ftserve.access")
log = logging.getLogger("ftserve.api")

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""Incoming `X-Request-Id` values kept as they are; anything else is replaced by a new id."""
PART_PATH = re.compile(r"/v1/uploads/[^/]+/parts")
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def body_limit(settings: Settings, path: str) -> tuple[int, bool]:
    """The route's body limit in bytes, and whether its handler streams the body itself."""
    path = path.rstrip("/")
    if path == "/v1/files":
        return settings.max_file_bytes + OVERHEAD_BYTES, True
    if PART_PATH.fullmatch(path):
        return settings.max_part_bytes + OVERHEAD_BYTES, True
    if path in INFERENCE_PATHS:
        return settings.max_inference_body_bytes, False
    return settings.max_json_body_bytes, False


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"Request body too large: the limit for this endpoint is {limit} bytes.", code="request_too_large"
    )


@dataclass
class Exchange:
    """One request as the edge sees it."""

    scope: Scope
    send_downstream: Send
    request_id: str
    started: float
    status: int | None = None
    body_done: bool = False
    disconnected: bool = False
    organization: Organization | None = None

    async def send(self, message: Message) -> None:
        if self.disconnected:
            return
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
            headers.append((b"x-request-id", self.request_id.encode()))
            if not self.body_done and not any(k.lower() == b"connection" for k, _ in headers):
                headers.append((b"connection", b"close"))  # the unread rest of the body is never read
            message = {**message, "headers": headers}
        try:
            await self.send_downstream(message)
        except OSError:  # the client closed the connection while we answered
            self.disconnected = True

    async def refuse(self, exc: FtserveError) -> None:
        start, body = envelope_message(exc, close=not self.body_done)
        await self.send(start)
        await self.send(body)


class BodyReader:
    """The request's `receive`, with the route's size limit and an idle timeout between chunks."""

    def __init__(self, exchange: Exchange, receive: Receive, limit: int, idle_timeout_s: float) -> None:
        self.exchange = exchange
        self.inner = receive
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self.received = 0

    async def receive(self) -> Message:
        if self.exchange.body_done:
            return await self.inner()  # after the body: only the disconnect a response may wait for
        try:
            message = await asyncio.wait_for(self.inner(), self.idle_timeout_s)
        except TimeoutError:
            raise BodyTimeoutError(
                f"The request body stalled: nothing arrived for {self.idle_timeout_s:g} seconds.",
                code="request_timeout",
            ) from None
        if message["type"] == "http.disconnect":
            self.exchange.disconnected = True
            raise ClientDisconnected
        self.received += len(message.get("body", b""))
        if self.received > self.limit:
            raise too_large(self.limit)
        if not message.get("more_body", False):
            self.exchange.body_done = True
        return message

    async def read_all(self) -> bytes:
        chunks = []
        while not self.exchange.body_done:
            chunks.append((await self.receive()).get("body", b""))
        return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the body read already, then the client's later messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again() -> Message:
        return pending.pop() if pending else await receive()

    return receive_again  # type: ignore[return-value]


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else f"req_{random_token(24)}"
        exchange = Exchange(scope, send, request_id, time.perf_counter())
        token = REQUEST_ID.set(request_id)
        try:
            await self._serve(exchange, headers, receive)
        except ClientDisconnected:
            pass
        except FtserveError as exc:
            await exchange.refuse(exc)
        except Exception:
            if not exchange.disconnected:
                log.exception("unhandled error at the HTTP edge")
                if exchange.status is None:
                    await exchange.refuse(FtserveError("The server had an error while processing your request."))
        finally:
            self._log(exchange)
            REQUEST_ID.reset(token)

    async def _serve(self, exchange: Exchange, headers: dict[bytes, bytes], receive: Receive) -> None:
        scope = exchange.scope
        length_header = headers.get(b"content-length")
        try:
            length = int(length_header) if length_header is not None else None
        except ValueError:
            raise InvalidRequestError("Invalid Content-Length header.") from None
        has_body = bool(length) or b"transfer-encoding" in headers
        exchange.body_done = not has_body
        path: str = scope["path"]
        if path.startswith("/v1/") and (has_body or b"authorization" in headers):
            exchange.organization = await self._authenticate(scope)
            CALLER_ORGANIZATION_ID.set(exchange.organization.id)  # whom the gateway counts tokens for
        limit, streamed = body_limit(self.settings, path)
        if length is not None and length > limit:
            raise too_large(limit)
        if not has_body:
            await self.app(scope, receive, exchange.send)
            return
        reader = BodyReader(exchange, receive, limit, self.settings.body_idle_timeout_s)
        if streamed:
            await self.app(scope, reader.receive, exchange.send)  # type: ignore[arg-type]
            return
        body = await reader.read_all()
        if too_deep(body):
            raise InvalidRequestError(
                f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="json_too_deep"
            )
        await self.app(scope, replay(body, receive), exchange.send)

    @staticmethod
    async def _authenticate(scope: Scope) -> Organization:
        """The key's organisation, by the `organization` dependency itself (which leaves the key's
        identity in the scope's state, so it does not run twice); its database session is closed
        before the body is read."""
        try:
            return await provide_organization(Request(scope))
        except PoolTimeoutError:
            raise pool_exhausted() from None

    @staticmethod
    def _log(exchange: Exchange) -> None:
        scope = exchange.scope
        org = exchange.organization
        status = 499 if exchange.disconnected else exchange.status
        fields: dict[str, Any] = {
            "method": scope["method"],
            "route": scope.get("path_template") or scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - exchange.started) * 1000, 1),
            "org": org.name if org else None,
            "org_id": org.id if org else None,
        }
        note = " (client disconnected)" if exchange.disconnected else ""
        access_log.info(
            "%s %s %s %.1fms org=%s%s",
            fields["method"],
            fields["route"],
            status,
            fields["duration_ms"],
            fields["org"] or "-",
            note,
            extra={"fields": fields},
        )
