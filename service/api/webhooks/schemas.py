"""Wire shapes of the webhook admin endpoints (an addition to OpenAI's API)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from service.db.models import WebhookDelivery, WebhookEndpoint


class WebhookEndpointObject(BaseModel):
    """An endpoint of the organisation; its secret is shown only by `ftserve webhooks add`."""

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    event_types: list[str] | None
    """The event types sent there; null for all."""
    created_at: int

    @classmethod
    def from_row(cls, row: WebhookEndpoint) -> WebhookEndpointObject:
        return cls(id=row.id, object="webhook_endpoint", url=row.url, event_types=row.event_types,
                   created_at=row.created_at)  # fmt: skip


class WebhookEndpointList(BaseModel):
    object: Literal["list"]
    data: list[WebhookEndpointObject]
    has_more: bool


class WebhookDeliveryObject(BaseModel):
    """One event sent (or being sent) to one endpoint."""

    id: str
    """The `webhook-id` header of every attempt."""
    object: Literal["webhook_delivery"]
    event_id: str
    event_type: str
    endpoint_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: int | None
    """When a pending delivery is tried again."""
    last_status_code: int | None
    last_error: str | None
    created_at: int
    delivered_at: int | None

    @classmethod
    def from_row(cls, row: WebhookDelivery) -> WebhookDeliveryObject:
        return cls(
            id=row.id, object="webhook_delivery", event_id=row.event_id, event_type=row.event_type,
            endpoint_id=row.endpoint_id, status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts, next_attempt_at=int(row.next_attempt_at) if row.status == "pending" else None,
            last_status_code=row.last_status_code, last_error=row.last_error, created_at=row.created_at,
            delivered_at=row.delivered_at,
        )  # fmt: skip


class WebhookDeliveryList(BaseModel):
    """Deliveries newest first; the next page is `after=<last id>`."""

    object: Literal["list"]
    data: list[WebhookDeliveryObject]
    has_more: bool
