"""The sender: claims due deliveries, signs and sends each attempt, and schedules the next one.

Every API process runs one (`send_forever`). A row is claimed by a guarded UPDATE (still
pending, due, and not claimed by another sender), so two processes never send one delivery at
the same moment; a sender that dies mid-send leaves a claim that lapses, and the row is sent
again: at least once, always with the same `webhook-id`. No database connection is held while
a request is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import WebhookDelivery, WebhookEndpoint
from service.ids import now_s
from service.metrics import WEBHOOK_ATTEMPTS
from service.settings import Settings
from service.webhooks.signing import sign
from service.webhooks.targets import RefusedTarget, resolve

log = logging.getLogger("ftserve.webhooks")

BATCH = 20
"""Deliveries one sender claims per round."""
MAX_BACKOFF_S = 3600.0
BODY_CAP = 1024
"""Bytes of a receiver's answer kept (as the error of a failed attempt); the rest is never read."""


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    event_type: str
    payload: str
    url: str
    secret: str
    attempts: int
    created_at: int


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False
    """A failure not worth retrying (a refused target)."""


def backoff_s(settings: Settings, attempts: int) -> float:
    """Wait before attempt `attempts + 1`: the base, doubled per attempt made, up to an hour.

    Example:
        >>> backoff_s(Settings(webhook_retry_base_s=5), 3)
        20.0
    """
    return float(min(settings.webhook_retry_base_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


def _due(now: float) -> object:
    return (
        (WebhookDelivery.status == "pending")
        & (WebhookDelivery.next_attempt_at <= now)
        & or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until <= now)
    )


async def claim(session: AsyncSession, settings: Settings) -> list[Attempt]:
    """Claim up to `BATCH` due deliveries for this sender; each claim counts as an attempt."""
    now = time.time()
    ids = list(await session.scalars(
        select(WebhookDelivery.id).where(_due(now)).order_by(WebhookDelivery.next_attempt_at).limit(BATCH)
    ))  # fmt: skip
    won: list[str] = []
    for delivery_id in ids:
        result = await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, _due(now))
            .values(claimed_until=now + 3 * settings.webhook_timeout_s, attempts=WebhookDelivery.attempts + 1)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if result.rowcount == 1:  # type: ignore[attr-defined]
            won.append(delivery_id)
    rows = (await session.execute(
        select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(won))
    )).all() if won else []  # fmt: skip
    await session.commit()
    return [Attempt(d.id, d.event_type, d.payload, url, secret, d.attempts, d.created_at) for d, url, secret in rows]


async def attempt(client: httpx.AsyncClient, settings: Settings, item: Attempt) -> Outcome:
    """One signed POST of a delivery to its checked address."""
    try:
        target = await resolve(item.url, allow_private=settings.webhook_allow_private)
    except RefusedTarget as exc:
        return Outcome(False, error=f"refused: {exc}", final=True)
    except OSError as exc:
        return Outcome(False, error=str(exc)[:300])
    body = item.payload.encode()
    headers = {
        **sign(item.secret, item.delivery_id, int(time.time()), body),
        "content-type": "application/json",
        "host": target.host,
        "user-agent": "ftserve-webhooks",
    }
    extensions = {"sni_hostname": target.hostname} if target.url.startswith("https:") else {}
    try:
        async with client.stream("POST", target.url, content=body, headers=headers, extensions=extensions,
                                 timeout=settings.webhook_timeout_s) as response:  # fmt: skip
            kept = b""
            async for chunk in response.aiter_raw():
                kept += chunk
                if len(kept) >= BODY_CAP:
                    break
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= response.status_code < 300:
        return Outcome(True, status_code=response.status_code)
    text = kept[:BODY_CAP].decode(errors="replace")
    return Outcome(False, status_code=response.status_code, error=f"HTTP {response.status_code}: {text}"[:BODY_CAP])


async def settle(session: AsyncSession, settings: Settings, item: Attempt, outcome: Outcome) -> None:
    """Write an attempt's outcome: delivered, given up, or due again after the backoff."""
    now = time.time()
    values: dict[str, object] = {"claimed_until": None, "last_status_code": outcome.status_code,
                                 "last_error": outcome.error}  # fmt: skip
    if outcome.delivered:
        values.update(status="delivered", delivered_at=now_s())
    elif outcome.final or now + backoff_s(settings, item.attempts) > item.created_at + settings.webhook_retry_for_s:
        values.update(status="failed")
    else:
        values.update(next_attempt_at=now + backoff_s(settings, item.attempts))
    await session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == item.delivery_id, WebhookDelivery.status == "pending")
        .values(**values).execution_options(synchronize_session=False)
    )  # fmt: skip
    await session.commit()
    outcome_label = "delivered" if outcome.delivered else ("refused" if outcome.final else "failed")
    WEBHOOK_ATTEMPTS.labels(event_type=item.event_type, outcome=outcome_label).inc()
    if not outcome.delivered:
        log.warning("webhook %s attempt %d failed: %s", item.delivery_id, item.attempts, outcome.error)


async def send_due(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings,
                   client: httpx.AsyncClient) -> int:  # fmt: skip
    """One round: claim, send in parallel, settle; how many deliveries were attempted."""
    async with sessionmaker() as session:
        items = await claim(session, settings)
    if not items:
        return 0
    outcomes = await asyncio.gather(*(attempt(client, settings, item) for item in items))
    async with sessionmaker() as session:
        for item, outcome in zip(items, outcomes, strict=True):
            await settle(session, settings, item, outcome)
    return len(items)


async def send_forever(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Send due deliveries for as long as the process runs (wrapped in `keep_running`)."""
    # Redirects are not followed: a redirect could point at an address that was never checked.
    async with httpx.AsyncClient(follow_redirects=False, timeout=settings.webhook_timeout_s, trust_env=False) as client:
        while True:
            if not await send_due(sessionmaker, settings, client):
                await asyncio.sleep(settings.webhook_poll_s)
