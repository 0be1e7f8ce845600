"""The trainer worker: an arq worker on `ftserve:train` that runs one job at a time.

    python -m trainer.worker        (what `ftserve worker` runs)

For each job: claim it in the database (a lease, renewed by a heartbeat), train in a thread,
then record the outcome. SIGTERM or SIGINT makes the running job save its full state and go
back to `queued`, so another worker continues it from that step; then the worker exits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from arq.worker import Worker, func
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog import load_catalog
from service.db import create_engine, create_sessionmaker
from service.db.models import File, FineTuningJob, Organization
from service.fine_tuning import add_event, fine_tuned_model_name, job_storage_prefix, method_hyperparameters
from service.ids import new_file_id, now_s, random_token
from service.queue import TRAIN_FUNCTION, TRAIN_QUEUE, redis_settings
from service.settings import Settings
from service.storage import ObjectStorage, configured_storage
from trainer.job import JobFailure, JobSpec, Outcome, run_training
from trainer.reporting import DatabaseReporter, JobLease, heartbeat

log = logging.getLogger("ftserve.worker")
JOB_TIMEOUT_S = 7 * 24 * 3600
"""A training run may take days; arq's 300 s default would kill every real job."""


async def claim(sessionmaker: async_sessionmaker[AsyncSession], job_id: str, lease: JobLease) -> FineTuningJob | None:
    """Take the job if it is queued (or running under a lapsed lease); None if it is not ours to run."""
    now = now_s()
    async with sessionmaker() as session:
        result = await session.execute(
            update(FineTuningJob)
            .where(
                FineTuningJob.id == job_id,
                FineTuningJob.status.in_(("queued", "running")),
                (FineTuningJob.worker_id.is_(None)) | (FineTuningJob.lease_expires_at < now),
            )
            .values(status="running", worker_id=lease.worker_id, lease_expires_at=now + lease.lease_s)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            return None
        job = await session.scalar(select(FineTuningJob).where(FineTuningJob.id == job_id))
        assert job is not None
        if job.started_at is None:
            job.started_at = now
            add_event(session, job_id, "Fine-tuning job started")
        await session.commit()
        return job


async def _spec(session: AsyncSession, job: FineTuningJob, settings: Settings) -> JobSpec:
    base = load_catalog(settings).resolve(job.base_model)
    if base is None:
        raise JobFailure("model_not_available", f"Base model {job.base_model!r} left the catalogue.", "model")
    org = await session.get(Organization, job.organization_id)
    keys = {}
    for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
        if file_id:
            row = await session.scalar(select(File).where(File.id == file_id))
            if row is None:
                raise JobFailure(f"invalid_{param}", f"The {param.replace('_', ' ')} {file_id} was deleted.", param)
            keys[param] = row.storage_key
    return JobSpec(
        job_id=job.id,
        base=base,
        fine_tuned_model=fine_tuned_model_name(job.base_model, org.name if org else "org", job.suffix, job.id),
        seed=job.seed,
        hyperparameters=method_hyperparameters(job),
        training_key=keys["training_file"],
        validation_key=keys.get("validation_file"),
        storage_prefix=job_storage_prefix(job),
        resume_prefix=job.resume_checkpoint,
        method=(job.method or {}).get("type", "supervised"),
    )


async def _finish(ctx: dict[str, Any], lease: JobLease, spec: JobSpec, outcome: Outcome) -> None:
    """Record how training ended; every write is fenced on this worker still holding the job."""
    sessionmaker, storage = ctx["sessionmaker"], ctx["storage"]
    async with sessionmaker() as session:
        job = await session.scalar(select(FineTuningJob).where(lease.holder()))
        if job is None:
            return  # another worker holds it now
        values: dict[str, Any] = {"worker_id": None, "lease_expires_at": None, "estimated_finish": None}
        if outcome.stopped in ("pause", "requeue"):
            if outcome.resume_prefix:
                values["resume_checkpoint"] = outcome.resume_prefix
            if outcome.stopped == "requeue" and job.status == "running":
                values["status"] = "queued"
                add_event(session, job.id, f"The trainer is shutting down; the job saved step {outcome.step} "
                                           "and is queued again.")  # fmt: skip
            else:
                add_event(session, job.id, f"Job paused at step {outcome.step}/{outcome.total_steps}")
        elif outcome.stopped is None and job.status == "running":
            file_id = new_file_id()
            key = f"files/{job.organization_id}/{file_id}"
            # Base64, as OpenAI serves result files: clients written against it decode them.
            size = await asyncio.to_thread(storage.put_stream, key, [base64.b64encode(outcome.results_csv.encode())])
            session.add(File(id=file_id, organization_id=job.organization_id, filename="step_metrics.csv",
                             purpose="fine-tune-results", bytes=size, created_at=now_s(), status="processed",
                             storage_key=key))  # fmt: skip
            values |= {
                "status": "succeeded",
                "finished_at": now_s(),
                "fine_tuned_model": spec.fine_tuned_model,
                "trained_tokens": outcome.trained_tokens,
                "result_files": [file_id],
            }
            add_event(session, job.id, f"New fine-tuned model created: {spec.fine_tuned_model}")
            add_event(session, job.id, "The job has successfully completed")
        await session.execute(update(FineTuningJob).where(lease.holder()).values(**values))
        await session.commit()


async def _fail(ctx: dict[str, Any], lease: JobLease, code: str, message: str, param: str | None) -> None:
    async with ctx["sessionmaker"]() as session:
        result = await session.execute(
            update(FineTuningJob)
            .where(lease.holder(), FineTuningJob.status == "running")
            .values(status="failed", finished_at=now_s(), worker_id=None, lease_expires_at=None,
                    estimated_finish=None, error={"code": code, "message": message, "param": param})
        )  # fmt: skip
        if result.rowcount == 1:  # type: ignore[attr-defined]
            add_event(session, lease.job_id, message, level="error")
        await session.commit()


async def train_job(ctx: dict[str, Any], job_id: str) -> None:
    """arq entry point. Never raises: the outcome is in the database, and arq must not retry on its own."""
    if ctx["shutting_down"].is_set():
        return  # the reconciler enqueues the job again for a worker that is staying
    ctx["idle"].clear()
    try:
        await _claim_and_train(ctx, job_id)
    finally:
        ctx["idle"].set()


async def _claim_and_train(ctx: dict[str, Any], job_id: str) -> None:
    settings: Settings = ctx["settings"]
    lease = JobLease(job_id, ctx["worker_id"], settings.lease_s, shutting_down=ctx["shutting_down"])
    job = await claim(ctx["sessionmaker"], job_id, lease)
    if job is None:
        return
    # Each beat also reads cancel/pause requests, so it runs every second whatever the lease length.
    beat = asyncio.create_task(heartbeat(ctx["sessionmaker"], lease, min(1.0, settings.lease_s / 3)))
    try:
        async with ctx["sessionmaker"]() as session:
            spec = await _spec(session, job, settings)
        reporter = DatabaseReporter(asyncio.get_running_loop(), ctx["sessionmaker"], ctx["storage"], lease,
                                    spec.fine_tuned_model, settings.checkpoints_kept)  # fmt: skip
        outcome = await asyncio.to_thread(run_training, spec, ctx["storage"], settings, reporter)
        await _finish(ctx, lease, spec, outcome)
    except JobFailure as exc:
        await _fail(ctx, lease, exc.code, exc.message, exc.param)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        await _fail(ctx, lease, "training_error", f"Training failed: {type(exc).__name__}: {exc}", None)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def startup(ctx: dict[str, Any]) -> None:
    settings = Settings()
    engine = create_engine(settings)
    storage: ObjectStorage = configured_storage(settings)
    ctx.update(settings=settings, engine=engine, sessionmaker=create_sessionmaker(engine), storage=storage)
    ctx["worker_id"] = f"{socket.gethostname()}:{os.getpid()}:{random_token(6)}"
    log.info("trainer worker %s ready", ctx["worker_id"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def build_worker(settings: Settings) -> Worker:
    idle = asyncio.Event()
    idle.set()
    ctx: dict[str, Any] = {"shutting_down": asyncio.Event(), "idle": idle}
    return Worker(
        functions=[func(train_job, name=TRAIN_FUNCTION, keep_result=0, max_tries=10**6, timeout=JOB_TIMEOUT_S)],
        queue_name=TRAIN_QUEUE,
        redis_settings=redis_settings(settings.redis_url or "redis://127.0.0.1:6379"),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx=ctx,
        max_jobs=1,  # one job per device set; run more workers for more devices
        job_timeout=JOB_TIMEOUT_S,
        keep_result=0,
        max_tries=10**6,
        poll_delay=0.5,
        handle_signals=False,
    )


async def _health(worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """`GET /health` on the worker's health port: 200 while the loop turns and the database answers."""
    try:
        await asyncio.wait_for(reader.readline(), timeout=5)
        ctx = worker.ctx
        status, body = 200, {"status": "ok", "busy": not ctx["idle"].is_set()}
        if ctx["shutting_down"].is_set():
            status, body = 503, {"status": "shutting_down"}
        elif "sessionmaker" in ctx:
            try:
                async with ctx["sessionmaker"]() as session:
                    await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=5)
            except Exception as exc:
                status, body = 503, {"status": f"database unreachable: {type(exc).__name__}"}
        payload = json.dumps(body).encode()
        reason = "OK" if status == 200 else "Service Unavailable"
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode() + payload)  # fmt: skip
        await writer.drain()
    finally:
        writer.close()


async def _run(worker: Worker, health_port: int | None) -> None:
    """Run until SIGTERM/SIGINT, then let the running job checkpoint and requeue before exiting."""
    loop = asyncio.get_running_loop()
    if health_port:
        await asyncio.start_server(lambda r, w: _health(worker, r, w), "0.0.0.0", health_port)  # noqa: S104
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    main = asyncio.create_task(worker.async_run())
    await asyncio.wait([main, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    worker.ctx["shutting_down"].set()
    idle = asyncio.create_task(worker.ctx["idle"].wait())
    await asyncio.wait([main, idle], return_when=asyncio.FIRST_COMPLETED)
    idle.cancel()
    main.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main
    await worker.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if not settings.redis_url:
        print("ftserve worker: REDIS_URL is not set", file=sys.stderr)
        return 2

    async def run() -> None:
        await _run(build_worker(settings), settings.worker_health_port)  # built in the loop arq binds to

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
