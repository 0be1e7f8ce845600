"""Executing eval runs off the request path, on the arq queue `ftserve:evals` consumed in the API processes.

A run samples (for a `completions` data source) and grades its items concurrently
(`FTSERVE_EVAL_CONCURRENCY`), storing each graded item at once. The database is the truth:
an item is stored once (unique per run and index), so a run resumed after a restart grades
only what is missing; `recover_forever` re-enqueues queued runs Redis lost and in-progress runs
whose process stopped renewing `heartbeat_at`. Cancel is a status the run polls twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import httpx
from arq import worker as arq_worker
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import Eval, EvalRun, EvalRunOutputItem, File, Organization
from service.evals.sampler import GatewaySampler
from service.evals.shapes import NO_ERROR, passes
from service.fine_tuning.retrying import is_transient
from service.graders import GradingOptions, SamplerError, grade, sample_namespace
from service.graders.errors import SampleFailure
from service.graders.model import render_messages
from service.graders.template import lookup
from service.ids import new_id, now_s
from service.settings import Settings
from service.storage import ObjectStorage
from service.webhooks import outbox

log = logging.getLogger("ftserve.evals")

EVAL_QUEUE = "ftserve:evals"
EVAL_FUNCTION = "run_eval"
HEARTBEAT_S = 5
STALE_S = 30
ACTIVE = ("queued", "in_progress")


async def enqueue_run(redis: ArqRedis, run_id: str) -> None:
    await redis.enqueue_job(EVAL_FUNCTION, run_id, _job_id=run_id, _queue_name=EVAL_QUEUE)


def eval_worker(settings: Settings, ctx: dict[str, Any], redis: ArqRedis) -> arq_worker.Worker:
    return arq_worker.Worker(
        functions=[arq_worker.func(run_eval, name=EVAL_FUNCTION, keep_result=0, max_tries=1000)],
        queue_name=EVAL_QUEUE, redis_pool=redis, ctx=ctx, max_jobs=settings.eval_runs_per_process,
        job_timeout=24 * 3600, keep_result=0, poll_delay=0.2, handle_signals=False,
    )  # fmt: skip


def read_items(source: dict[str, Any], storage: ObjectStorage, file: File | None) -> list[dict[str, Any]]:
    """The data source's lines, each `{"item": …, "sample": …?}`; a bare object is its own item."""
    inner = source["source"]
    if inner["type"] == "file_content":
        lines: list[Any] = inner["content"]
    else:
        assert file is not None
        raw = b"".join(storage.read_chunks(file.storage_key)).decode("utf-8")
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return [line if isinstance(line, dict) and "item" in line else {"item": line} for line in lines]


async def run_eval(ctx: dict[str, Any], run_id: str) -> None:
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    settings: Settings = ctx["settings"]
    async with sessionmaker() as session:
        run = await session.scalar(select(EvalRun).where(EvalRun.id == run_id))
        if run is None or run.status not in ACTIVE:
            return
        organization = await session.get(Organization, run.organization_id)

        evaluation = await session.scalar(select(Eval).where(Eval.id == run.eval_id))
        file = None
        if run.data_source["source"]["type"] == "file_id":
            file = await session.scalar(select(File).where(File.id == run.data_source["source"]["id"],
                                                           File.organization_id == run.organization_id))  # fmt: skip
        done = set(await session.scalars(select(EvalRunOutputItem.datasource_item_id)
                                         .where(EvalRunOutputItem.run_id == run_id)))  # fmt: skip
        # A run found in progress is a restart: its last runner died or stopped on a transient fault.
        restart = run.status == "in_progress"
        await session.execute(update(EvalRun).where(EvalRun.id == run_id, EvalRun.status.in_(ACTIVE))
                              .values(status="in_progress", heartbeat_at=now_s(),
                                      lapsed_restarts=EvalRun.lapsed_restarts + int(restart)))  # fmt: skip
        await session.commit()
    if organization is None or evaluation is None:
        return
    if restart and run.lapsed_restarts >= settings.max_restarts:
        message = (f"The eval run was started {run.lapsed_restarts + 1} times and stopped each time before "
                   "it finished; it was stopped rather than started again.")  # fmt: skip
        await _finish(sessionmaker, run_id, "failed", {"code": "run_restarts_exhausted", "message": message})
        return
    try:
        items = await asyncio.to_thread(read_items, run.data_source, ctx["storage"], file)
    except Exception as error:
        if is_transient(error):
            raise  # storage away for a moment: the recovery loop starts the run again
        await _finish(sessionmaker, run_id, "failed", {"code": "invalid_data_source", "message": str(error)[:1000]})
        return
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0)) as http:
        sampler = GatewaySampler(sessionmaker, settings, http, organization, param="data_source.model")
        options = GradingOptions.from_settings(settings, sampler)
        work = _Work(sessionmaker, run, evaluation.testing_criteria, options, sampler)
        canceled = asyncio.Event()
        watcher = asyncio.create_task(_watch(sessionmaker, run_id, canceled))
        try:
            todo = [i for i in range(len(items)) if i not in done]
            limit = asyncio.Semaphore(settings.eval_concurrency)

            async def one(index: int) -> None:
                async with limit:
                    if not canceled.is_set():
                        await work.item(index, items[index])

            tasks = [asyncio.create_task(one(i)) for i in todo]
            waiting = asyncio.create_task(canceled.wait())
            await asyncio.wait([*tasks, waiting] if tasks else [waiting], return_when=asyncio.FIRST_COMPLETED)
            while tasks and not canceled.is_set() and not all(t.done() for t in tasks):
                await asyncio.wait([*tasks, waiting], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            waiting.cancel()
            failures = [o for o in outcomes if isinstance(o, Exception)]
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if canceled.is_set():
        return
    permanent = [f for f in failures if not is_transient(f)]
    if permanent:
        # The same items would fail the same way on every restart: end the run, and say why.
        log.warning("eval run %s: %d item(s) failed", run_id, len(permanent), exc_info=permanent[0])
        message = f"{len(permanent)} item(s) could not be graded: {type(permanent[0]).__name__}: {permanent[0]}"
        await _finish(sessionmaker, run_id, "failed", {"code": "item_error", "message": message[:1000]})
        return
    if failures:
        # An item not stored (a lost database, say): the recovery loop starts the run again, which
        # grades only what is missing, up to `max_restarts` times.
        raise RuntimeError(f"{len(failures)} items of eval run {run_id} were not stored") from failures[0]
    await _finish(sessionmaker, run_id, "completed", None)


async def _watch(sessionmaker: async_sessionmaker[AsyncSession], run_id: str, canceled: asyncio.Event) -> None:
    """Renew the heartbeat, and notice a cancel (or a deletion) within half a second."""
    beat = 0.0
    while True:
        await asyncio.sleep(0.5)
        beat += 0.5
        async with sessionmaker() as session:
            status = await session.scalar(select(EvalRun.status).where(EvalRun.id == run_id))
            if status != "in_progress":
                canceled.set()
                return
            if beat >= HEARTBEAT_S:
                beat = 0.0
                await session.execute(update(EvalRun).where(EvalRun.id == run_id).values(heartbeat_at=now_s()))
                await session.commit()


class _Work:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], run: EvalRun, criteria: list[dict[str, Any]],
                 options: GradingOptions, sampler: GatewaySampler) -> None:  # fmt: skip
        self.sessionmaker, self.run, self.criteria, self.options, self.sampler = (
            sessionmaker, run, criteria, options, sampler)  # fmt: skip

    async def item(self, index: int, line: dict[str, Any]) -> None:
        item = line["item"]
        sample_record, output_text, errored = await self._sample(item, line.get("sample"))
        results, status = [], "pass"
        if errored:
            status = "error"
        else:
            sample = sample_namespace(output_text, line.get("sample") if isinstance(line.get("sample"), dict) else None)
            sample["output_text"] = output_text
            for criterion in self.criteria:
                outcome = await grade(criterion, sample, item, self.options)
                passed = not outcome.errors.any() and passes(criterion, outcome.reward)
                usage = {m: vars(u) for m, u in outcome.usage_per_model.items()}
                results.append({"name": criterion["name"], "type": criterion["type"], "score": outcome.reward,
                                "passed": passed, "sample": None, "errors": outcome.errors.as_dict(),
                                "model_usage": usage})  # fmt: skip
                if outcome.errors.any() and status != "fail":
                    status = "error"
                elif not passed:
                    status = "fail"
        row = EvalRunOutputItem(
            id=new_id("outputitem"), run_id=self.run.id, eval_id=self.run.eval_id,
            organization_id=self.run.organization_id, datasource_item_id=index, datasource_item=item,
            sample=sample_record, results=results, status=status, created_at=now_s(),
        )  # fmt: skip
        async with self.sessionmaker() as session:
            session.add(row)
            with contextlib.suppress(IntegrityError):  # stored already by an earlier attempt
                await session.commit()

    async def _sample(self, item: Any, given: Any) -> tuple[dict[str, Any], str, bool]:
        source = self.run.data_source
        params = source.get("sampling_params") or {}
        record: dict[str, Any] = {
            "model": source.get("model") or "", "input": [], "output": [], "finish_reason": "", "error": NO_ERROR,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0},
            "seed": params.get("seed") or 0, "temperature": params.get("temperature", 1.0),
            "top_p": params.get("top_p", 1.0), "max_completion_tokens": params.get("max_completion_tokens") or 0,
        }  # fmt: skip
        if source["type"] != "completions":
            text = given.get("output_text", "") if isinstance(given, dict) else ""
            record["output"] = [{"role": "assistant", "content": text}]
            return record, str(text), False
        try:
            messages = self._messages(item)
            record["input"] = messages
            chat = {"temperature": params.get("temperature", 1.0), "max_tokens": params.get("max_completion_tokens")
                    or 256}  # fmt: skip
            for name in ("top_p", "seed"):
                if params.get(name) is not None:
                    chat[name] = params[name]
            answer = await self.sampler.sample(source["model"], messages, chat)
        except (SamplerError, SampleFailure) as error:
            record["error"] = {"code": "sampling_error", "message": str(error)[:1000]}
            return record, "", True
        record["output"] = [{"role": "assistant", "content": answer.text}]
        record["finish_reason"] = "stop"
        record["usage"] = vars(answer.usage)
        return record, answer.text, False

    def _messages(self, item: Any) -> list[dict[str, str]]:
        spec = self.run.data_source["input_messages"]
        context = {"item": item, "sample": {}}
        if spec["type"] == "item_reference":
            messages = lookup(spec["item_reference"], context)
            if not isinstance(messages, list):
                raise SampleFailure("invalid_variable_error", f"`{spec['item_reference']}` is not a list of messages.")
            return [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in messages]
        return render_messages(spec["template"], context)


async def _finish(sessionmaker: async_sessionmaker[AsyncSession], run_id: str, status: str,
                  error: dict[str, Any] | None) -> None:  # fmt: skip
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(EvalRunOutputItem).where(EvalRunOutputItem.run_id == run_id)))
        values = summarize(rows)
        won = await session.execute(update(EvalRun).where(EvalRun.id == run_id, EvalRun.status.in_(ACTIVE))
                                    .values(status=status, error=error, **values))  # fmt: skip
        if won.rowcount:  # type: ignore[attr-defined]
            organization_id = await session.scalar(select(EvalRun.organization_id).where(EvalRun.id == run_id))
            kind = "eval.run.succeeded" if status == "completed" else f"eval.run.{status}"
            await outbox.record(session, organization_id or "", kind, run_id)
        await session.commit()


def summarize(rows: list[EvalRunOutputItem]) -> dict[str, Any]:
    """`result_counts`, `per_testing_criteria_results` and `per_model_usage` from the stored items."""
    counts = {"total": len(rows), "passed": 0, "failed": 0, "errored": 0}
    criteria: dict[str, dict[str, int]] = {}
    usage: dict[str, dict[str, int]] = {}

    def add_usage(model: str, numbers: dict[str, int]) -> None:
        entry = usage.setdefault(model, {"model_name": model, "invocation_count": 0, "prompt_tokens": 0,
                                         "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0})  # fmt: skip
        entry["invocation_count"] += 1
        for key in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"):
            entry[key] += int(numbers.get(key) or 0)

    for row in rows:
        counts[{"pass": "passed", "fail": "failed"}.get(row.status, "errored")] += 1
        if row.sample.get("model") and row.sample.get("output"):
            add_usage(row.sample["model"], row.sample.get("usage") or {})
        for result in row.results:
            entry = criteria.setdefault(result["name"], {"testing_criteria": result["name"], "passed": 0, "failed": 0})
            entry["passed" if result["passed"] else "failed"] += 1
            for model, numbers in (result.get("model_usage") or {}).items():
                add_usage(model, numbers)
    return {"result_counts": counts, "per_testing_criteria_results": list(criteria.values()),
            "per_model_usage": list(usage.values())}  # fmt: skip


async def recover_forever(sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, interval_s: float) -> None:
    """Re-enqueue runs that Redis lost or whose process died (stale heartbeat). A run started more
    than `max_restarts` times fails when it starts next (`run_eval`), so enqueueing it again is safe."""
    while True:
        try:
            async with sessionmaker() as session:
                rows = (await session.execute(select(EvalRun.id, EvalRun.status, EvalRun.heartbeat_at)
                                              .where(EvalRun.status.in_(ACTIVE)))).all()  # fmt: skip
            for run_id, status, heartbeat in rows:
                stale = status == "in_progress" and (heartbeat or 0) < now_s() - STALE_S
                if stale:
                    await redis.delete(in_progress_key_prefix + run_id, job_key_prefix + run_id)
                if stale or not await redis.exists(job_key_prefix + run_id):
                    await enqueue_run(redis, run_id)
        except Exception:  # a lost database or Redis: try again next round
            log.warning("eval run recovery failed; retrying", exc_info=True)
        await asyncio.sleep(interval_s)
