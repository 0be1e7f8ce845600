"""Health endpoints for probes and autoscalers (no key needed; they reveal counts, never tenant data).

- `/health`: liveness, the process answers;
- `/health/ready`: readiness, the database and Redis answer too;
- `/health/queue`: jobs queued and running, the number of trainers worth having.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import func, select, text

from service.db.models import FineTuningJob


@get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False)
async def ready(state: State) -> Response[dict[str, str]]:
    """Readiness: the database and Redis answer too (503 naming what does not)."""
    checks = {}
    try:
        async with state.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await state.queue.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return Response({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


@get("/health/queue", include_in_schema=False)
async def queue_depth(state: State) -> dict[str, int]:
    """Jobs waiting for or holding a trainer: what an autoscaler sizes the trainer pool by (counts only)."""
    async with state.sessionmaker() as session:
        rows = dict(
            (
                await session.execute(
                    select(FineTuningJob.status, func.count())
                    .where(FineTuningJob.status.in_(("queued", "running")))
                    .group_by(FineTuningJob.status)
                )
            ).all()
        )
    queued, running = int(rows.get("queued", 0)), int(rows.get("running", 0))
    return {"queued": queued, "running": running, "wanted_trainers": queued + running}
