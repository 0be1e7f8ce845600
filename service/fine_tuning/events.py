"""Job events as rows. Only the transitions of this package write them."""

from __future__ import annotations

from collections.abc import Sequence
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
    job_seq: int | None = None,
) -> FineTuningJobEvent:
    """An event row; `step` is set on `metrics` events (see `leases.report`). Its `job_seq` is
    given by the transition that writes it (`guarded_update`)."""
    return FineTuningJobEvent(
        id=new_id("ftevent-"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        message=message,
        type=type,
        data=data,
        step=step,
        job_seq=job_seq,
    )


async def guarded_update(
    session: AsyncSession, where: Any, *, events: Sequence[FineTuningJobEvent] = (), **values: Any
) -> bool:
    """One UPDATE of one job under `where`, plus `events` if it matched; whether it matched (won).

    The UPDATE also counts the events on the job's row and numbers them (`job_seq`) from the
    count it returns: the row's lock orders every writer of one job, so numbers follow commits."""
    if events:
        values["events_written"] = FineTuningJob.events_written + len(events)
    statement = update(FineTuningJob).where(where).values(**values).returning(FineTuningJob.events_written)
    row = (await session.execute(statement.execution_options(synchronize_session=False))).first()
    if row is None:
        return False
    first = row[0] - len(events) + 1
    for offset, event in enumerate(events):
        event.job_seq = first + offset
    session.add_all(events)
    return True
