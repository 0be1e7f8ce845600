"""Background loops of a process (the validator's queue consumer, say), kept running through faults.

A loop that stops on an error (Redis gone, the database restarting) is started again with
exponential backoff, from 0.5 s up to 30 s between starts, for as long as the process lives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from service.fine_tuning.retrying import attempt_error, is_transient

log = logging.getLogger("ftserve.background")


async def keep_running(name: str, start: Callable[[], Awaitable[None]]) -> None:
    """Await `start()` again whenever it raises (or returns); only cancellation ends this."""

    def report(state: RetryCallState) -> None:
        exc = attempt_error(state)
        if exc is not None and not is_transient(exc):
            log.error("%s stopped: %s: %s; starting it again", name, type(exc).__name__, exc, exc_info=exc)
        else:
            log.warning("%s stopped (%s); starting it again", name, f"{type(exc).__name__}: {exc}"[:300])

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception), wait=wait_exponential(multiplier=0.5, max=30.0) + wait_random(0, 0.5),
        before_sleep=report,
    ):  # fmt: skip
        with attempt:
            await start()
            raise RuntimeError(f"{name} returned")  # a loop that returns is started again too
