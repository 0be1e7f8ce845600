"""Tokens served, counted by the gateway from the `usage` of every answer, and read back in
buckets as OpenAI's `/v1/organization/usage/completions` reports them.

Counting happens on the request path, so it only adds to a dict in memory; a background task
writes the sums to `usage_records` every `FLUSH_INTERVAL_S`, one row per organisation, model
and minute, and the reader adds the rows of each bucket together (several API processes may
each have written a row for the same minute).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import UsageRecord
from service.ids import now_s

log = logging.getLogger("ftserve.usage")

FLUSH_INTERVAL_S = 2.0
"""How often counted tokens are written to the database."""

CALLER_ORGANIZATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ftserve_caller_organization_id", default=None
)
"""The organisation of the request being served (set by the HTTP edge once the key is checked)."""

BUCKET_WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
DEFAULT_LIMITS = {"1m": 60, "1h": 24, "1d": 7}
MAX_LIMITS = {"1m": 1440, "1h": 168, "1d": 31}
"""OpenAI's defaults and maxima of `limit` (buckets per page) for each `bucket_width`."""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass
class Sums:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_cached_tokens: int = 0


class UsageMeter:
    """The counts of one API process that are not written yet."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str, int], Sums] = defaultdict(Sums)

    def count(self, model: str, usage: Any) -> None:
        """Add one answer's `usage` (chat or text completion) for the caller's organisation."""
        organization_id = CALLER_ORGANIZATION_ID.get()
        if organization_id is None or not isinstance(usage, dict):
            return
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        sums = self.pending[(organization_id, model, now_s() // 60 * 60)]
        sums.requests += 1
        sums.input_tokens += _int(usage.get("prompt_tokens"))
        sums.output_tokens += _int(usage.get("completion_tokens"))
        sums.input_cached_tokens += cached

    async def flush(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Write what was counted; on a failure the counts go back to wait for the next flush."""
        if not self.pending:
            return
        taken, self.pending = self.pending, defaultdict(Sums)
        rows = [
            UsageRecord(organization_id=org, model=model, minute=minute, requests=s.requests,
                        input_tokens=s.input_tokens, output_tokens=s.output_tokens,
                        input_cached_tokens=s.input_cached_tokens)
            for (org, model, minute), s in taken.items()
        ]  # fmt: skip
        try:
            async with sessionmaker() as session, session.begin():
                session.add_all(rows)
        except Exception:
            for key, s in taken.items():
                mine = self.pending[key]
                mine.requests += s.requests
                mine.input_tokens += s.input_tokens
                mine.output_tokens += s.output_tokens
                mine.input_cached_tokens += s.input_cached_tokens
            raise

    async def flush_forever(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush(sessionmaker)
            except Exception:
                log.warning("usage counts not written yet; retrying in %.0f s", FLUSH_INTERVAL_S, exc_info=True)


METER = UsageMeter()
"""The process's meter: the gateway counts into it, the API's lifespan flushes it."""


def count_usage(model: str, usage: Any) -> None:
    METER.count(model, usage)


async def usage_buckets(
    session: AsyncSession,
    organization_id: str,
    *,
    start_time: int,
    end_time: int,
    width_s: int,
    group_by_model: bool,
    models: list[str] | None,
) -> dict[int, dict[str | None, Sums]]:
    """Sums per bucket start (and per model when grouped) of the organisation's answers in
    [start_time, end_time). Minutes are summed by the database and put in buckets here, where
    integer division means the same on SQLite and PostgreSQL."""
    query = (
        select(
            UsageRecord.minute,
            UsageRecord.model,
            func.sum(UsageRecord.requests),
            func.sum(UsageRecord.input_tokens),
            func.sum(UsageRecord.output_tokens),
            func.sum(UsageRecord.input_cached_tokens),
        )
        .where(UsageRecord.organization_id == organization_id)
        .where(UsageRecord.minute >= start_time, UsageRecord.minute < end_time)
        .group_by(UsageRecord.minute, UsageRecord.model)
    )
    if models:
        query = query.where(UsageRecord.model.in_(models))
    result: dict[int, dict[str | None, Sums]] = defaultdict(lambda: defaultdict(Sums))
    for minute, model, requests, input_tokens, output_tokens, cached in (await session.execute(query)).all():
        start = start_time + (int(minute) - start_time) // width_s * width_s
        sums = result[start][model if group_by_model else None]
        sums.requests += int(requests or 0)
        sums.input_tokens += int(input_tokens or 0)
        sums.output_tokens += int(output_tokens or 0)
        sums.input_cached_tokens += int(cached or 0)
    return result
