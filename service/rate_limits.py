"""Per-organisation limits: jobs active at once, and requests per key per window.

Both answer OpenAI's 429 envelope (`type: rate_limit_error`, `code` below), which the SDKs turn
into `RateLimitError`.

- Active jobs (`max_active_jobs_per_organization`): jobs validating, queued or running count; a
  create past the limit is refused before anything is written, so the SDK's retry of a 429 can
  never make a duplicate. Paused and finished jobs do not count.
- Requests (`key_request_limit` per `key_request_window_s`): a fixed window per key, counted in
  Redis by the `limits` library, so every API process shares one count. A window starts at a
  key's first request and lasts `key_request_window_s`; a client may thus send up to twice the
  limit across a window boundary, never more. Every authenticated response carries OpenAI's
  `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
  `x-ratelimit-reset-requests`; a 429 also carries `Retry-After` (whole seconds) and
  `retry-after-ms`, which the SDKs honour before retrying. If Redis cannot be reached the
  request is let through (and logged): a lost counter must not take the API down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import FineTuningJob
from service.errors import FtserveError
from service.fine_tuning import ACTIVE_STATUSES

log = logging.getLogger("ftserve.rate_limits")


class RateLimitError(FtserveError):
    """OpenAI's 429: too many requests, or too many jobs at once."""

    status = 429
    type = "rate_limit_error"


async def check_active_job_limit(session: AsyncSession, organization_id: str, limit: int) -> None:
    """Raises `RateLimitError` when the organisation already has `limit` active jobs (0: no limit)."""
    if limit <= 0:
        return
    active = await session.scalar(
        select(func.count())
        .select_from(FineTuningJob)
        .where(FineTuningJob.organization_id == organization_id, FineTuningJob.status.in_(ACTIVE_STATUSES))
    )
    if (active or 0) >= limit:
        raise RateLimitError(
            f"This organization has {active} fine-tuning jobs validating, queued or running, and may have "
            f"{limit} at once. Wait for one to finish, or cancel one.",
            code="active_job_limit_exceeded",
        )


@dataclass(frozen=True)
class RequestCount:
    """Where a key stands in its current window."""

    limit: int
    remaining: int
    reset_s: float
    """Seconds until the window ends."""
    allowed: bool

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit-requests", str(self.limit).encode()),
            (b"x-ratelimit-remaining-requests", str(self.remaining).encode()),
            (b"x-ratelimit-reset-requests", duration(self.reset_s).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(max(1, math.ceil(self.reset_s))).encode()))
            headers.append((b"retry-after-ms", str(max(1, math.ceil(self.reset_s * 1000))).encode()))
        return headers

    def error(self, key_id: str) -> RateLimitError:
        return RateLimitError(
            f"Rate limit reached for requests on key {key_id}: limit {self.limit}, used {self.limit}. "
            f"Please try again in {duration(self.reset_s)}.",
            code="rate_limit_exceeded",
        )


def duration(seconds: float) -> str:
    """OpenAI's reset format: `850ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


class RequestLimiter:
    """Counts requests per key in Redis (fixed windows, `limits`' async redis-py storage)."""

    def __init__(self, redis_url: str, limit: int, window_s: int) -> None:
        self.storage = RedisStorage(
            "async+" + redis_url, implementation="redispy", key_prefix="ftserve-requests", socket_timeout=1
        )
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(limit, window_s)

    async def hit(self, key_id: str) -> RequestCount | None:
        """Counts one request of `key_id`; None when Redis could not be asked (the request goes on)."""
        try:
            allowed = await self.limiter.hit(self.item, key_id)
            reset_at, remaining = await self.limiter.get_window_stats(self.item, key_id)
        except Exception as exc:  # the storage wraps its driver's errors in several types
            log.warning("request limit not checked: %s", exc)
            return None
        # Redis reports a window's end rounded to the second: add half of one, so that a client
        # that waits `reset_s` never comes back before the window has ended.
        reset_s = min(float(self.item.get_expiry()), max(0.0, reset_at - time.time()) + 0.5)
        return RequestCount(limit=self.item.amount, remaining=remaining, reset_s=reset_s, allowed=allowed)
