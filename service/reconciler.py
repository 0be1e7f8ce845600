"""Keeps Redis in step with the database, so that no job is ever lost.

The database says what should happen; Redis only wakes workers up. Each pass:

- a job `validating_files` whose validation is not in Redis is enqueued for validation;
- a job `queued` that no worker holds and that is not in Redis is enqueued for training
  (Redis was flushed or restarted, or a resume raced a worker still saving its pause);
- a job `running` whose holder stopped renewing its lease (the worker was killed, its node
  died, it lost the database) goes back to `queued` (`states.requeue_lapsed`) and is enqueued
  again; it resumes from its last checkpoint. Leases are compared on the database's clock.

Every step is idempotent, so any number of API replicas may run it at once.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import FineTuningJob
from service.fine_tuning import states
from service.fine_tuning.clock import db_now
from service.fine_tuning.retrying import is_transient
from service.queue import (
    enqueue_training,
    enqueue_validation,
    is_enqueued,
    release_in_progress,
    validate_job_id,
)

log = logging.getLogger("ftserve.reconciler")


async def reconcile_once(
    sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, *, max_restarts: int = 3
) -> list[str]:
    """One pass; returns the ids of the jobs it enqueued again. A lapsed job that lost its worker
    `max_restarts` times since its last checkpoint fails instead (`states.requeue_lapsed`)."""
    requeued: list[str] = []
    async with sessionmaker() as session:
        validating = list(await session.scalars(
            select(FineTuningJob.id).where(FineTuningJob.status == "validating_files")
        ))  # fmt: skip
        for job_id in validating:
            if not await is_enqueued(redis, validate_job_id(job_id)):
                await enqueue_validation(redis, job_id)
                requeued.append(job_id)

        lost = list(await session.scalars(
            select(FineTuningJob.id).where(
                FineTuningJob.status == "running",
                or_(FineTuningJob.lease_expires_at.is_(None), FineTuningJob.lease_expires_at <= db_now()),
            )
        ))  # fmt: skip
        for job_id in lost:
            if await states.requeue_lapsed(session, job_id, max_restarts=max_restarts):
                await release_in_progress(redis, job_id)

        queued = list(await session.scalars(
            select(FineTuningJob.id).where(
                FineTuningJob.status == "queued",
                or_(FineTuningJob.lease_expires_at.is_(None), FineTuningJob.lease_expires_at <= db_now()),
            )
        ))  # fmt: skip
        for job_id in queued:
            if not await is_enqueued(redis, job_id):
                await enqueue_training(redis, job_id)
                requeued.append(job_id)
    return requeued


async def reconcile_forever(
    sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, interval_s: float, *, max_restarts: int = 3
) -> None:
    while True:
        try:
            requeued = await reconcile_once(sessionmaker, redis, max_restarts=max_restarts)
            if requeued:
                log.info("reconciler enqueued again: %s", ", ".join(requeued))
        except Exception as exc:
            if is_transient(exc):  # Redis or the database away for a moment: one line, not a traceback
                log.warning("reconciler pass failed (%s: %s); retrying in %ss", type(exc).__name__, exc, interval_s)
            else:
                log.exception("reconciler pass failed; retrying in %ss", interval_s)
        await asyncio.sleep(interval_s)
