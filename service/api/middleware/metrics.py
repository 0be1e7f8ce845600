"""Request metrics and `GET /metrics` (Prometheus text format) of the API process.

The middleware wraps everything, the edge included, so refused requests count too. Requests are
labelled by the route template Litestar matched (`/v1/fine_tuning/jobs/{fine_tuning_job_id}`),
never by the path, so ids never become label values; a request no route matched is `unmatched`.
`/metrics` needs no key, like `/health`: it reveals counts, never tenant data.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from service.db.models import EvalRun, FineTuningJob, WebhookDelivery
from service.metrics import EVAL_RUNS, HTTP_LATENCY, HTTP_REQUESTS, JOBS, QUEUE_DEPTH, WEBHOOK_DELIVERIES

log = logging.getLogger("ftserve.api")

JOB_STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
EVAL_STATUSES = ("queued", "in_progress", "completed", "failed", "canceled")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


async def _counts(session: Any, column: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (await session.execute(select(column, func.count()).group_by(column))).all()}


async def refresh_gauges(state: Any) -> None:
    """Read the counts the gauges show from the database (one short session per scrape)."""
    async with state.sessionmaker() as session:
        jobs = await _counts(session, FineTuningJob.status)
        runs = await _counts(session, EvalRun.status)
        deliveries = await _counts(session, WebhookDelivery.status)
    for status in JOB_STATUSES:
        JOBS.labels(status=status).set(jobs.get(status, 0))
    QUEUE_DEPTH.labels(state="queued").set(jobs.get("queued", 0))
    QUEUE_DEPTH.labels(state="running").set(jobs.get("running", 0))
    for status in EVAL_STATUSES:
        EVAL_RUNS.labels(status=status).set(runs.get(status, 0))
    for status in DELIVERY_STATUSES:
        WEBHOOK_DELIVERIES.labels(status=status).set(deliveries.get(status, 0))


class MetricsMiddleware:
    """Counts and times every HTTP request; answers `GET /metrics` itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await self._serve(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def counted_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            route = scope.get("path_template") or "unmatched"
            HTTP_REQUESTS.labels(route=route, method=scope["method"], status=str(status)).inc()
            HTTP_LATENCY.labels(route=route, method=scope["method"]).observe(time.perf_counter() - started)

    async def _serve(self, scope: Any, send: Any) -> None:
        try:
            await refresh_gauges(scope["app"].state)
        except Exception:  # the process's own series still answer while the database is away
            log.warning("/metrics: the database counts could not be read", exc_info=True)
        body = generate_latest()
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
