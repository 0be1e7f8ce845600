"""Dropping cached facts in every API process at once: revoked keys today, withdrawn permissions next.

API processes cache what every request asks (which organisation a key belongs to, for
`key_cache_s` seconds). A change that must take effect everywhere at once is:

1. committed to the database first (the truth a process reads on a cache miss), then
2. announced with `publish(redis_url, topic, ident)` on the Redis channel `ftserve:invalidate`
   as the text `topic:ident` (for example `api_key:key_abc`).

Every API process runs `invalidations.run(redis_url)`: it subscribes to the channel and calls the
handlers registered with `invalidations.on(topic, handler)`, which drop the matching entries
(`ident` None means "drop the whole topic"). A message reaches every subscriber in milliseconds.

Redis keeps no pub/sub messages: what is published while a process is not subscribed is lost to
it. Two rules keep the one-second promise anyway:

- `invalidations.max_age_s(normal)` is a cache's lifetime: `normal` while the subscription is
  live (subscribed, and Redis answered a ping within `LIVENESS_S`), `FALLBACK_MAX_AGE_S` (1 s)
  otherwise. With Redis down or unreachable, a process re-reads each key from the database at
  least once a second.
- Every (re)subscription calls every handler with `ident` None before the subscription counts
  as live, so nothing missed while it was down survives.

A connection that dies silently (no reset) is noticed by the missing ping answer within
`LIVENESS_S`; a revocation published in that window reaches that process within
`LIVENESS_S + FALLBACK_MAX_AGE_S`.

The CLI publishes from outside the API. In a deployment it reads `REDIS_URL`; `ftserve up` with
a private Redis writes that Redis's URL to `<data dir>/redis.url` (`announce_redis_url`), where
`redis_url_for` finds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from service.settings import Settings

CHANNEL = "ftserve:invalidate"
FALLBACK_MAX_AGE_S = 1.0
"""A cache's lifetime while the subscription is not live."""
PING_EVERY_S = 0.5
LIVENESS_S = 1.5
"""The subscription counts as live this long after Redis last said anything on it."""

Handler = Callable[[str | None], object]
log = logging.getLogger("ftserve.invalidation")


class Invalidator:
    """The subscriber side: handlers per topic, and whether the subscription is live."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._live_until = 0.0

    def on(self, topic: str, handler: Handler) -> None:
        """Call `handler(ident)` for each `topic:ident` published, and `handler(None)` on (re)subscribing."""
        self._handlers.setdefault(topic, []).append(handler)

    def live(self) -> bool:
        return time.monotonic() < self._live_until

    def max_age_s(self, normal_s: float) -> float:
        """How long a cached fact may be trusted now."""
        return normal_s if self.live() else min(normal_s, FALLBACK_MAX_AGE_S)

    def dispatch(self, message: str) -> None:
        topic, _, ident = message.partition(":")
        for handler in self._handlers.get(topic, ()):
            handler(ident or None)

    def _drop_everything(self) -> None:
        for handlers in self._handlers.values():
            for handler in handlers:
                handler(None)

    async def run(self, redis_url: str, stop: asyncio.Event) -> None:
        """Listen until `stop` is set, reconnecting with backoff whenever Redis goes away.

        A flag, not only a cancellation: redis-py can turn a cancellation that lands as a read
        times out into that timeout, and a loop waiting on cancellation alone would never end.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((RedisError, OSError)),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            before_sleep=lambda state: log.warning(
                "invalidation channel down (%s); caching keys for at most %.0f s", state.outcome.exception(),
                FALLBACK_MAX_AGE_S,
            ),
        ):  # fmt: skip
            with attempt:
                await self._listen(redis_url, stop)

    async def _listen(self, redis_url: str, stop: asyncio.Event) -> None:
        client = aioredis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=LIVENESS_S + 1)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                confirmed = False
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=PING_EVERY_S)
                    if message is None:
                        await pubsub.ping()
                        continue
                    if message["type"] == "subscribe" and not confirmed:
                        self._drop_everything()
                        confirmed = True
                    elif message["type"] == "message":
                        data = message["data"]
                        self.dispatch(data.decode() if isinstance(data, bytes) else str(data))
                    if confirmed:
                        self._live_until = time.monotonic() + LIVENESS_S
        finally:
            self._live_until = 0.0
            await client.aclose()


invalidations = Invalidator()
"""The process's subscriber; caches register their handlers on it at import."""


async def publish(redis_url: str, topic: str, ident: str) -> int:
    """Announce that `topic:ident` changed; returns how many processes were subscribed."""
    client = aioredis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((RedisError, OSError)),
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.2, max=1.0),
            reraise=True,
        ):
            with attempt:
                return int(await client.publish(CHANNEL, f"{topic}:{ident}"))
    finally:
        await client.aclose()
    raise AssertionError("not reached")  # pragma: no cover


def _url_file(settings: Settings) -> Path:
    return settings.resolved_data_dir() / "redis.url"


def announce_redis_url(settings: Settings, url: str | None) -> None:
    """`ftserve up` records the Redis its API uses (None: removes the record on the way out)."""
    path = _url_file(settings)
    if url is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")


def redis_url_for(settings: Settings) -> str | None:
    """The Redis the running service listens on: `REDIS_URL`, else what `ftserve up` recorded."""
    if settings.redis_url:
        return settings.redis_url
    path = _url_file(settings)
    return (path.read_text().strip() or None) if path.exists() else None
