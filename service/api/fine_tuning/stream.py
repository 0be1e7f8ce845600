"""`GET /v1/fine_tuning/jobs/{id}/events?stream=true`: a job's events as server-sent events.

Events are followed by their per-job number (`job_seq`, the SSE `id`): numbers follow commits,
so polling for `job_seq > last` never skips one. A reconnecting client's `Last-Event-ID` resumes
after that number, without a gap or a repeat. The stream ends with an `end` event once the job is
final and every event up to its last is sent. Each poll is a short session of its own: no
database connection is held while the stream waits. Numbers can have gaps (metrics events of
re-trained steps are replaced by new ones), and a reader need not mind them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar.response import Stream
from litestar.response.base import ASGIResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.api.fine_tuning.schemas import FineTuningJobEventObject
from service.api.fine_tuning.services import events_since
from service.errors import InvalidRequestError
from service.fine_tuning import FINAL_STATUSES
from service.metrics import EVENT_STREAMS
from service.rate_limits import RateLimitError
from service.settings import Settings


class EventStream(Stream):
    """A `Stream` that keeps its own media type: the route's (JSON, for the paged form) would win."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)


BATCH = 500
"""Events read per poll; a job with more waiting is read again at once."""
_open: Counter[str] = Counter()
"""Organisation id → event streams open in this process."""


def last_event_id(header: str | None) -> int:
    """The `job_seq` to resume after (0: from the first event)."""
    if header is None or header.strip() == "":
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        raise InvalidRequestError("Last-Event-ID must be an event number this stream sent.",
                                  param="Last-Event-ID") from None  # fmt: skip
    if value < 0:
        raise InvalidRequestError("Last-Event-ID must not be negative.", param="Last-Event-ID")
    return value


def take_slot(organization_id: str, limit: int) -> Callable[[], None]:
    """Take one of the organisation's stream slots in this process (429 when none is free), before
    the response starts; the returned callable gives it back (once, however often it is called)."""
    if _open[organization_id] >= limit:
        raise RateLimitError(
            f"Too many event streams open for this organization ({limit}); close one or use the paged list.",
            code="too_many_streams",
        )
    _open[organization_id] += 1
    EVENT_STREAMS.inc()
    given_back = False

    def give_back() -> None:
        nonlocal given_back
        if not given_back:
            given_back = True
            _open[organization_id] -= 1
            EVENT_STREAMS.dec()

    return give_back


async def job_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    job_id: str,
    after: int,
    give_back: Callable[[], None],
) -> AsyncIterator[bytes]:
    """The SSE frames of one job's events after `after`, ending once the job is final."""
    try:
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        while True:
            async with sessionmaker() as session:
                status, rows = await events_since(session, job_id, after, BATCH)
            for row in rows:
                data = FineTuningJobEventObject.from_row(row).model_dump_json()
                yield f"id: {row.job_seq}\ndata: {data}\n\n".encode()
                after = row.job_seq or after
            if status is None or (status in FINAL_STATUSES and len(rows) < BATCH):
                # The status was read before the events: every event up to the final one is sent.
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n".encode()
                return
            if rows:
                quiet_since = time.monotonic()
                if len(rows) == BATCH:
                    continue
            elif time.monotonic() - quiet_since >= settings.event_stream_heartbeat_s:
                yield b": keep-alive\n\n"  # a comment: proxies see traffic, EventSource ignores it
                quiet_since = time.monotonic()
            await asyncio.sleep(settings.event_stream_poll_s)
    finally:
        give_back()
