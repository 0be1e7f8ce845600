"""Job events as rows. Only the transitions of this package write them."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import FineTuningJob, FineTuningJobEvent
from service.ids import new_id, now_s

EventLevel = Literal["info", "warn", "error"]
EventType = Literal["message", "metrics"]


def job_event(
    job_id: str,
    message: str,
    *,
    level: EventLevel = "info",
    type: EventType = "message",
    data: dict[str, Any] | None = None,
    step: int | None = None,
) -> FineTuningJobEvent:
    """An event row; `step` is set on `metrics` events (see `leases.report`)."""
    return FineTuningJobEvent(
        id=new_id("ftevent-"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        message=message,
        type=type,
        data=data,
        step=step,
    )


async def guarded_update(session: AsyncSession, where: Any, **values: Any) -> bool:
    """One UPDATE of one job under `where`; whether it matched (the transition won)."""
    result = await session.execute(
        update(FineTuningJob).where(where).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
