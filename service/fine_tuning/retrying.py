"""Retries of transient faults, for every caller of a transition outside a request.

This module holds the one classification of faults for jobs and eval runs (`is_transient`).
A fault is transient when trying again may work: a dropped or refused database connection
(a failover, `pg_terminate_backend`, a restart), SQLite's `database is locked`, a pool that had
no free connection, Redis unreachable, a network connection refused, reset or timed out
(object storage included), object storage answering 5xx or "slow down". Anything else is
permanent and raised at once: a constraint violated, a bug, and every other `OSError` (a file
or model that is not there, a hub that cannot be reached offline, a disk refused) — trying again
gives the same answer, so a job fails with the cause instead of being requeued for ever.
Backoff is exponential with jitter, from 0.1 s to 2 s between tries.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import botocore.exceptions
import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_exponential, wait_random

log = logging.getLogger("ftserve.retrying")
T = TypeVar("T")


TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "53", "40001", "40P01")
"""PostgreSQL: connection exceptions, operator intervention (shutdown, restart), insufficient
resources, serialization failures and deadlocks."""


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (SQLAlchemy's `.orig`, then the driver's own cause chain)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen) or len(seen) > 16:
            continue
        seen.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a fault that trying again may cure."""
    for cause in _causes(exc):
        if isinstance(cause, DBAPIError) and (
            cause.connection_invalidated or isinstance(cause, OperationalError | InterfaceError)
        ):
            return True
        if isinstance(
            cause,
            PoolTimeoutError
            | redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError
            | ConnectionError
            | TimeoutError
            | socket.gaierror
            | botocore.exceptions.ConnectionError
            | botocore.exceptions.HTTPClientError,
        ):
            return True
        if isinstance(cause, botocore.exceptions.ClientError) and _storage_busy(cause):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES):
            return True
        if type(cause).__name__ in ("ConnectionDoesNotExistError", "InterfaceError"):  # asyncpg, on a cut socket
            return True
    return False


def _storage_busy(error: botocore.exceptions.ClientError) -> bool:
    """Object storage said to come back later: a 5xx, or S3's throttling codes."""
    response = error.response or {}
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(response.get("Error", {}).get("Code") or "")
    return status >= 500 or code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout")


def attempt_error(state: RetryCallState) -> BaseException | None:
    """The exception the retried attempt ended with, if any."""
    return state.outcome.exception() if state.outcome is not None else None


def _log_retry(state: RetryCallState) -> None:
    exc = attempt_error(state)
    log.warning("transient fault, retrying: %s", f"{type(exc).__name__}: {exc}"[:300])


async def retry_transient(call: Callable[[], Awaitable[T]], *, within_s: float) -> T:
    """`await call()`, tried again on transient faults for up to `within_s` seconds."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.1),
        stop=stop_after_delay(max(within_s, 0.0)),
        before_sleep=_log_retry,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # AsyncRetrying either returns or raises


async def in_session(
    sessionmaker: async_sessionmaker[AsyncSession],
    transition: Callable[..., Awaitable[T]],
    *args: object,
    within_s: float = 60.0,
    **kwargs: object,
) -> T:
    """Run `transition(session, *args, **kwargs)` in a fresh session per try, retrying transient faults."""

    async def once() -> T:
        async with sessionmaker() as session:
            return await transition(session, *args, **kwargs)

    return await retry_transient(once, within_s=within_s)
