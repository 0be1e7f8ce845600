"""The `validating_files` step: check a job's files, resolve `"auto"`, hand the job to the trainers.

Runs as the arq function `validate_job` on the `ftserve:validate` queue, inside every API process
(it needs no torch). A file that fails ends the job `failed` with the checker's code, the file's
param (`training_file` / `validation_file`) and a message naming the line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog import Catalog, load_catalog
from service.datasets import JsonlChecker, check_item_fields, grader_item_fields
from service.db.models import File, FineTuningJob
from service.errors import InvalidFileError
from service.fine_tuning import MIN_EXAMPLES, method_hyperparameters, states, with_hyperparameters
from service.fine_tuning.retrying import in_session, retry_transient
from service.logging_config import REQUEST_ID
from service.queue import enqueue_training
from service.storage import ObjectNotFound, ObjectStorage
from service.training_defaults import resolve_hyperparameters

log = logging.getLogger("ftserve.validation")
RETRY_WITHIN_S = 60.0
"""How long transient database or Redis faults are retried before the reconciler takes over."""


def count_examples(
    storage: ObjectStorage, key: str, *, param: str, method: str, grader: dict[str, Any] | None = None
) -> int:
    """Stream the stored file through the checker; every line must suit the job's method, and for
    a reinforcement job hold every field its grader's templates name."""
    fields = grader_item_fields(grader) if grader else []
    inspect = (lambda example, line: check_item_fields(example, fields, line, param)) if fields else None
    checker = JsonlChecker(param=param, inspect=inspect)
    try:
        for chunk in storage.read_chunks(key):
            checker.feed(chunk)
        count = checker.close()
    except ObjectNotFound:
        raise InvalidFileError(f"The {param.replace('_', ' ')}'s content is missing.", param=param) from None
    checker.check_method(method)
    return count


async def _read_job(
    session: AsyncSession, job_id: str
) -> tuple[FineTuningJob, list[tuple[str, str, str | None]]] | None:
    """The job and, per file, (param, file id, storage key or None if gone); None if not to validate.

    A short read in its own session: nothing is held while the files are counted."""
    job = await session.scalar(select(FineTuningJob).where(FineTuningJob.id == job_id))
    if job is None or job.status != "validating_files":
        return None  # cancelled meanwhile, or validated by another replica
    files = [("training_file", job.training_file)]
    if job.validation_file:
        files.append(("validation_file", job.validation_file))
    found = []
    for param, file_id in files:
        key = await session.scalar(
            select(File.storage_key).where(File.id == file_id, File.organization_id == job.organization_id)
        )
        found.append((param, file_id, key))
    await session.commit()
    return job, found


async def validate(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    redis: ArqRedis,
    job_id: str,
    catalog: Catalog | None = None,
) -> None:
    """Validate one job's files; move it to `queued` and enqueue it for training, or fail it.

    Three steps, none of which holds a transaction while another runs: read the job, count and
    check the files (no session at all), then one transition."""
    read = await in_session(sessionmaker, _read_job, job_id, within_s=RETRY_WITHIN_S)
    if read is None:
        return
    job, files = read
    method = (job.method or {}).get("type", "supervised")
    grader = ((job.method or {}).get("reinforcement") or {}).get("grader") if method == "reinforcement" else None
    counts: dict[str, int] = {}
    error: dict[str, Any] | None = None
    checked: list[tuple[str, str]] = []
    for param, file_id, key in files:
        checked.append((param, file_id))
        try:
            if key is None:
                raise InvalidFileError(f"The {param.replace('_', ' ')} {file_id} no longer exists.", param=param)
            counts[param] = await asyncio.to_thread(count_examples, storage, key, param=param, method=method,
                                                     grader=grader)  # fmt: skip
        except InvalidFileError as exc:
            error = {"code": exc.code or f"invalid_{param}", "message": exc.message, "param": param}
            break
    if error is None and counts["training_file"] < MIN_EXAMPLES:
        n = counts["training_file"]
        error = {
            "code": "invalid_n_examples",
            "message": f"Training file has {n} example(s), but must have at least {MIN_EXAMPLES} examples",
            "param": "training_file",
        }
    if error is not None:
        await in_session(
            sessionmaker, states.validation_failed, job_id, error, checked=checked, within_s=RETRY_WITHIN_S
        )
        return
    hyperparameters = resolve_hyperparameters(
        method_hyperparameters(job), counts["training_file"], (catalog or Catalog()).resolve(job.base_model)
    )
    moved = await in_session(
        sessionmaker, states.validated, job_id, method=with_hyperparameters(job.method, hyperparameters),
        checked=checked, within_s=RETRY_WITHIN_S,
    )  # fmt: skip
    if moved:
        # The job is queued in the database; should Redis fail here, the reconciler enqueues it.
        await retry_transient(lambda: enqueue_training(redis, job_id, REQUEST_ID.get()), within_s=RETRY_WITHIN_S)
        log.info("job %s validated (%s); queued for training", job_id, json.dumps(counts))


async def validate_job(ctx: dict[str, Any], job_id: str, request_id: str | None = None) -> None:
    """arq entry point; never raises, so arq never retries a validation on its own. Its log lines
    carry the id of the request that created the job."""
    REQUEST_ID.set(request_id)
    try:
        catalog = load_catalog(ctx["settings"]) if "settings" in ctx else None
        await validate(ctx["sessionmaker"], ctx["storage"], ctx["redis"], job_id, catalog)
    except Exception:
        log.exception("validating job %s failed; the reconciler will retry it", job_id)
