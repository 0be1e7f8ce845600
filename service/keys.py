"""API keys: issued per organisation, stored hashed, checked in constant time.

A key looks like `sk-ft-<lookup><secret>`. The database keeps its SHA-256 and a short lookup
prefix to find the row; the key itself is shown once, when it is created. SHA-256 without a
salt suffices because keys are 256-bit random tokens, not passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import ApiKey, Organization
from service.ids import new_id, new_org_id, now_s, random_token

KEY_PREFIX = "sk-ft-"
LOOKUP_CHARS = 12
ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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


async def create_key(session: AsyncSession, org_name: str) -> tuple[Organization, str]:
    """A new key for the organisation (created if needed); returns the plaintext key once."""
    org = await get_or_create_organization(session, org_name)
    lookup = random_token(LOOKUP_CHARS)
    key = KEY_PREFIX + lookup + random_token(40)
    session.add(
        ApiKey(
            id=new_id("key_"),
            organization_id=org.id,
            lookup=lookup,
            key_hash=hash_key(key),
            created_at=now_s(),
        )
    )
    await session.flush()
    return org, key


async def authenticate(session: AsyncSession, key: str) -> Organization | None:
    """The organisation that owns `key`, or None for a missing, malformed, wrong or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + LOOKUP_CHARS + 1:
        return None
    lookup = key[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_CHARS]
    row = await session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return await session.get(Organization, row.organization_id)
