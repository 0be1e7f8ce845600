"""Request-scoped dependencies: the database session, object storage and the caller's organisation.

The organisation dependency also checks the key's expiry and request limit, records its use,
and leaves the key's `KeyIdentity` on the request (`caller_key`, `require_admin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.types import Message, Scope
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Organization
from service.errors import AuthenticationError
from service.ids import now_s
from service.invalidation import PING_EVERY_S, invalidations
from service.keys import LAST_USED_RESOLUTION_S, KeyIdentity, PermissionDeniedError, hash_key, identify, record_use
from service.rate_limits import RequestCount, RequestLimiter
from service.settings import Settings
from service.storage import ObjectStorage
from service.ttl_cache import TtlCache

log = logging.getLogger("ftserve.api")

KNOWN_KEYS = TtlCache[str, KeyIdentity](ttl_s=3600)
"""Key hash → identity, so that most requests skip the key lookup. Read with the lifetime
`invalidations.max_age_s(settings.key_cache_s)`; a revocation drops the key's entry at once."""
invalidations.on("api_key", lambda key_id: KNOWN_KEYS.discard_where(lambda _, v: key_id in (None, v.key_id)))

_IDENTITY = "ftserve_key"
_REQUEST_COUNT = "ftserve_request_count"
_last_recorded: dict[str, float] = {}
"""key id → when this process last wrote its `last_used_at` (monotonic)."""
_background: set[asyncio.Task[None]] = set()


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    async with state.sessionmaker() as session:
        yield session


def provide_storage(state: State) -> ObjectStorage:
    return state.storage  # type: ignore[no-any-return]


async def provide_organization(request: Request[Any, Any, Any]) -> Organization:
    """The organisation of the Bearer key; 401 in OpenAI's words otherwise, 429 past the key's limit."""
    checked: KeyIdentity | None = request.state.get(_IDENTITY)
    if checked is not None:  # the edge middleware checked (and counted) this request's key already
        return checked.organization
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationError(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    state = request.app.state
    settings: Settings = state.settings
    digest = hash_key(key)
    identity = KNOWN_KEYS.get(digest, max_age_s=invalidations.max_age_s(settings.key_cache_s))
    if identity is None:
        # A session of its own, closed at once: the request's session may wait on a slow body.
        async with state.sessionmaker() as session:
            identity = await identify(session, key)
        if identity is not None:
            KNOWN_KEYS.put(digest, identity)
    shown = f"{key[:6]}***{key[-4:]}" if len(key) > 10 else "***"
    if identity is None:
        raise AuthenticationError(f"Incorrect API key provided: {shown}.", code="invalid_api_key")
    if identity.expired(now_s()):
        raise AuthenticationError(f"The API key provided has expired: {shown}.", code="invalid_api_key")
    request.state[_IDENTITY] = identity
    _record_use_soon(state, identity.key_id)
    limiter: RequestLimiter | None = getattr(state, "request_limiter", None)
    if limiter is not None:
        count = await limiter.hit(identity.key_id)
        if count is not None:
            request.state[_REQUEST_COUNT] = count
            if not count.allowed:
                raise count.error(identity.key_id)
    return identity.organization


def caller_key(request: Request[Any, Any, Any]) -> KeyIdentity:
    """The identity of the request's key (after the organisation dependency ran)."""
    identity = request.state.get(_IDENTITY)
    if identity is None:
        raise AuthenticationError("This endpoint needs an API key.", code="missing_api_key")
    return identity  # type: ignore[no-any-return]


def require_admin(request: Request[Any, Any, Any]) -> KeyIdentity:
    """The caller's identity if its key is an admin key of its organisation; 403 otherwise."""
    identity = caller_key(request)
    if not identity.is_admin:
        raise PermissionDeniedError(
            "You have insufficient permissions for this operation: it needs an admin key of organization "
            f"{identity.organization.name} (`ftserve keys create --org {identity.organization.name} --admin`).",
            code="insufficient_permissions",
        )
    return identity


async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
    """`x-ratelimit-*` on every response to a key (and `Retry-After` on a 429): the SDKs read them."""
    if message["type"] != "http.response.start":
        return
    count: RequestCount | None = (scope.get("state") or {}).get(_REQUEST_COUNT)
    if count is not None:
        message["headers"] = [*message.get("headers", []), *count.headers()]


def _record_use_soon(state: State, key_id: str) -> None:
    """Writes `last_used_at` in the background, at most once a minute per key and process."""
    now = time.monotonic()
    last = _last_recorded.get(key_id)
    if last is not None and now - last < LAST_USED_RESOLUTION_S:
        return
    _last_recorded[key_id] = now

    async def write() -> None:
        try:
            async with state.sessionmaker() as session:
                await record_use(session, key_id, now_s())
                await session.commit()
        except Exception as exc:  # a missed timestamp must never fail or slow a request
            log.warning("could not record the use of key %s: %s", key_id, exc)

    task = asyncio.create_task(write())
    _background.add(task)
    task.add_done_callback(_background.discard)


def keys_lifespan(settings: Settings) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """Listens for invalidations and opens the request limiter for the app's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        stop = asyncio.Event()
        listener = asyncio.create_task(invalidations.run(settings.redis_url, stop)) if settings.redis_url else None
        if settings.redis_url and settings.key_request_limit > 0:
            app.state.request_limiter = RequestLimiter(
                settings.redis_url, settings.key_request_limit, settings.key_request_window_s
            )
        try:
            yield
        finally:
            stop.set()
            if listener is not None:
                listener.cancel()
                await asyncio.wait([listener], timeout=2 * PING_EVERY_S)
            if _background:  # last-use writes in flight: a few ms each, bounded all the same
                await asyncio.wait(list(_background), timeout=5)

    return lifespan
