"""`/v1/organization/webhooks`: the organisation's webhook endpoints and their recent deliveries
(admin keys only; endpoints are added and removed with `ftserve webhooks`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.deps import require_admin
from service.api.openapi_docs import ERROR_RESPONSES, ErrorResponse
from service.api.pagination import cursor_page
from service.api.webhooks.schemas import (
    WebhookDeliveryList,
    WebhookDeliveryObject,
    WebhookEndpointList,
    WebhookEndpointObject,
)
from service.db.models import Organization, WebhookDelivery, WebhookEndpoint

ADMIN_ERROR_RESPONSES = {
    **ERROR_RESPONSES,
    403: ResponseSpec(data_container=ErrorResponse, description="Not an admin key", generate_examples=False),
}


class WebhookController(Controller):
    path = "/v1/organization/webhooks"
    tags = ["Webhooks"]

    @get(responses=ADMIN_ERROR_RESPONSES, operation_id="listWebhookEndpoints",
         summary="List the organization's webhook endpoints (an addition; admin keys)")  # fmt: skip
    async def list_endpoints(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
    ) -> WebhookEndpointList:  # fmt: skip
        require_admin(request)
        rows = await db_session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.organization_id == organization.id)
            .order_by(WebhookEndpoint.seq)
        )  # fmt: skip
        data = [WebhookEndpointObject.from_row(r) for r in rows]
        return WebhookEndpointList(object="list", data=data, has_more=False)

    @get("/deliveries", responses=ADMIN_ERROR_RESPONSES, operation_id="listWebhookDeliveries",
         summary="List the organization's webhook deliveries, newest first (an addition; admin keys)")  # fmt: skip
    async def list_deliveries(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
        after: FromQuery[str | None] = None,
        endpoint_id: Annotated[str | None, QueryParameter(description="Only this endpoint's.", max_length=64)] = None,
    ) -> WebhookDeliveryList:
        require_admin(request)
        query = select(WebhookDelivery).where(WebhookDelivery.organization_id == organization.id)
        if endpoint_id is not None:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        page = await cursor_page(db_session, query, WebhookDelivery, limit=limit, after=after)
        data = [WebhookDeliveryObject.from_row(r) for r in page.items]
        return WebhookDeliveryList(object="list", data=data, has_more=page.has_more)
