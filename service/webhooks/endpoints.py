"""An organisation's webhook endpoints: added, listed and removed by `ftserve webhooks`."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import Organization, WebhookEndpoint
from service.ids import new_id, now_s
from service.webhooks import EVENT_TYPES
from service.webhooks.signing import new_secret


async def add_endpoint(
    session: AsyncSession, org_name: str, url: str, event_types: list[str] | None
) -> tuple[Organization, WebhookEndpoint]:
    """A new endpoint with a fresh secret; ValueError for an unknown organisation, URL or event type."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    unknown = sorted(set(event_types or ()) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    org = await session.scalar(select(Organization).where(Organization.name == org_name))
    if org is None:
        raise ValueError(f"no organization {org_name!r} (`ftserve keys create --org {org_name}` creates it)")
    row = WebhookEndpoint(
        id=new_id("we_"), organization_id=org.id, url=url, secret=new_secret(),
        event_types=sorted(set(event_types)) if event_types else None, created_at=now_s(),
    )  # fmt: skip
    session.add(row)
    return org, row


async def list_endpoints(session: AsyncSession, org_name: str | None) -> list[tuple[WebhookEndpoint, str]]:
    """Endpoints with their organisation's name, oldest first."""
    query = select(WebhookEndpoint, Organization.name).join(
        Organization, Organization.id == WebhookEndpoint.organization_id
    )
    if org_name is not None:
        query = query.where(Organization.name == org_name)
    return [(row, name) for row, name in (await session.execute(query.order_by(WebhookEndpoint.seq))).all()]


async def remove_endpoint(session: AsyncSession, endpoint_id: str) -> bool:
    """Remove an endpoint and its deliveries (pending ones are not sent); whether it existed."""
    result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
