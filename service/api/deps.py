"""Request-scoped dependencies: the database session, object storage and the caller's organisation."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Organization
from service.errors import AuthenticationError
from service.keys import authenticate, hash_key
from service.storage import ObjectStorage
from service.ttl_cache import TtlCache

KNOWN_KEYS = TtlCache[str, Organization](ttl_s=10)
"""Key hash → organisation, so that most requests skip the key lookup. A revoked key keeps
working in a process for at most this long."""


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    async with state.sessionmaker() as session:
        yield session


def provide_storage(state: State) -> ObjectStorage:
    return state.storage  # type: ignore[no-any-return]


async def provide_organization(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> Organization:
    """The organisation of the Bearer key; 401 in OpenAI's words otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationError(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    digest = hash_key(key)
    organization = KNOWN_KEYS.get(digest)
    if organization is not None:
        return organization
    organization = await authenticate(db_session, key)
    if organization is not None:
        db_session.expunge(organization)  # a plain object from here on, shared between requests
        KNOWN_KEYS.put(digest, organization)
        return organization
    shown = f"{key[:6]}***{key[-4:]}" if len(key) > 10 else "***"
    raise AuthenticationError(f"Incorrect API key provided: {shown}.", code="invalid_api_key")
