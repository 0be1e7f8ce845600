"""API keys: issued per organisation, stored hashed, checked in constant time.

A key looks like `sk-ft-<lookup><secret>`. The database keeps its SHA-256 and a short lookup
prefix to find the row; the key itself is shown once, when it is created. SHA-256 without a
salt suffices because keys are 256-bit random tokens, not passwords.

A key may expire (`expires_at`), be revoked (`ftserve keys revoke`: the API processes hear of it
through `service.invalidation`), and be an admin key, which may also manage what its
organisation shares. `last_used_at` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import ApiKey, Organization
from service.errors import FtserveError
from service.ids import new_id, new_org_id, now_s, random_token

KEY_PREFIX = "sk-ft-"
LOOKUP_CHARS = 12
ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LAST_USED_RESOLUTION_S = 60
"""`last_used_at` is written at most this often per key."""


class PermissionDeniedError(FtserveError):
    """The key is valid but may not do this (OpenAI's 403)."""

    status = 403
    type = "permission_error"


@dataclass(frozen=True)
class KeyIdentity:
    """What a request's key says about its caller; cached by the API between requests."""

    key_id: str
    organization: Organization
    """Detached from any session: a plain object shared between requests."""
    is_admin: bool
    expires_at: int | None

    def expired(self, now: int) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def get_or_create_organization(session: AsyncSession, name: str) -> Organization:
    """The organisation called `name`, created on first use."""
    if not ORG_NAME.match(name):
        raise ValueError(
            f"organisation name {name!r} must be 1-64 lowercase letters, digits, '-' or '_' (it appears in model ids)"
        )
    org = await session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(id=new_org_id(), name=name, created_at=now_s())
        session.add(org)
        await session.flush()
    return org


async def create_key(
    session: AsyncSession, org_name: str, *, admin: bool = False, expires_at: int | None = None
) -> tuple[Organization, ApiKey, str]:
    """A new key for the organisation (created if needed); returns the plaintext key once."""
    org = await get_or_create_organization(session, org_name)
    lookup = random_token(LOOKUP_CHARS)
    key = KEY_PREFIX + lookup + random_token(40)
    row = ApiKey(
        id=new_id("key_"),
        organization_id=org.id,
        lookup=lookup,
        key_hash=hash_key(key),
        created_at=now_s(),
        expires_at=expires_at,
        is_admin=admin,
    )
    session.add(row)
    await session.flush()
    return org, row, key


async def list_keys(session: AsyncSession, org_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (of one organisation, if named) with its organisation's name, oldest first."""
    query = select(ApiKey, Organization.name).join(Organization, Organization.id == ApiKey.organization_id)
    if org_name is not None:
        query = query.where(Organization.name == org_name)
    rows = await session.execute(query.order_by(ApiKey.created_at, ApiKey.id))
    return [(key, name) for key, name in rows.tuples()]


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    """Marks the key revoked (a second revoke keeps the first time); None if there is no such key."""
    row = await session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now_s()
        await session.flush()
    return row


async def record_use(session: AsyncSession, key_id: str, now: int) -> None:
    """Sets `last_used_at` unless another process did so within the last minute."""
    await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION_S),
        )
        .values(last_used_at=now)
    )


async def identify(session: AsyncSession, key: str) -> KeyIdentity | None:
    """Who `key` belongs to, or None for a missing, malformed, wrong or revoked key.

    An expired key is identified (its caller is told it expired); `KeyIdentity.expired` says so.
    """
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + LOOKUP_CHARS + 1:
        return None
    lookup = key[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_CHARS]
    row = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    organization = await session.get(Organization, row.organization_id)
    if organization is None:
        return None
    session.expunge(organization)
    return KeyIdentity(key_id=row.id, organization=organization, is_admin=row.is_admin, expires_at=row.expires_at)


async def authenticate(session: AsyncSession, key: str) -> Organization | None:
    """The organisation that owns `key`, or None for a missing, malformed, wrong, revoked or expired key."""
    identity = await identify(session, key)
    if identity is None or identity.expired(now_s()):
        return None
    return identity.organization
