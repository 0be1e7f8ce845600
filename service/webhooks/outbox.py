"""The outbox: delivery rows written in the same transaction as the state change they report.

A transition calls `record` after its guarded statement won and before it commits; the commit
makes the state change and its deliveries durable together, or neither.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import FineTuningJob, WebhookDelivery, WebhookEndpoint
from service.ids import new_id, now_s


async def record(session: AsyncSession, organization_id: str, event_type: str, object_id: str) -> int:
    """One event of `event_type` about `object_id`, queued for each of the organisation's endpoints
    that takes it; how many deliveries were queued (none without an endpoint)."""
    endpoints = list(await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization_id)
    ))  # fmt: skip
    wanted = [e for e in endpoints if e.event_types is None or event_type in e.event_types]
    if not wanted:
        return 0
    created = now_s()
    event_id = new_id("evt_")
    body = {"id": event_id, "object": "event", "type": event_type, "created_at": created, "data": {"id": object_id}}
    payload = json.dumps(body, separators=(",", ":"))
    session.add_all(
        WebhookDelivery(
            id=new_id("wh_"),
            event_id=event_id,
            endpoint_id=e.id,
            organization_id=organization_id,
            event_type=event_type,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=float(created),
            created_at=created,
        )
        for e in wanted
    )
    return len(wanted)


async def record_job(session: AsyncSession, event_type: str, job_id: str) -> int:
    """`record` for a fine-tuning job, its organisation read in the same transaction."""
    organization_id = await session.scalar(select(FineTuningJob.organization_id).where(FineTuningJob.id == job_id))
    if organization_id is None:
        return 0
    return await record(session, organization_id, event_type, job_id)
