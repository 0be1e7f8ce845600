"""Grading a reinforcement job's samples with the shared graders (`service.graders`).

The graders are async (python graders wait on their sandbox, model graders on an inference
server); the training thread is not. `GraderPool` runs an event loop of its own in a daemon
thread and grades a step's samples there, at most `concurrency` at a time. Model graders reach
the organisation's models through `service.evals.sampler.GatewaySampler` (ftserve's inference
layer, as the API's grader endpoints do), with a database engine and HTTP client of the pool's
own, made the first time a model grader needs them.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from service.graders import GradingOptions, grade, sample_namespace
from service.graders.spec import sub_graders
from service.settings import Settings

CALL_BOUND_S = 300.0
"""The longest one grading call may take (a model grader's request with its retries)."""


@dataclass
class GradedGroup:
    rewards: list[float]
    sub_rewards: dict[str, list[float]] = field(default_factory=dict)
    """Per sub-grader of a `multi` grader, each sample's reward."""
    failures: int = 0
    """Samples the grader failed on (reward 0): a python grader that raised, a missing field…"""
    failure_detail: str | None = None


def sub_grader_names(grader: dict[str, Any]) -> list[str]:
    return list(sub_graders(grader)) if grader.get("type") == "multi" else []


def _uses_model(grader: dict[str, Any]) -> bool:
    if grader.get("type") in ("score_model", "label_model"):
        return True
    return grader.get("type") == "multi" and any(_uses_model(g) for g in sub_graders(grader).values())


class GraderPool:
    """Grades groups of completions; `close()` stops its loop."""

    def __init__(self, grader: dict[str, Any], settings: Settings, organization_id: str | None,
                 concurrency: int) -> None:  # fmt: skip
        self.grader = grader
        self.settings = settings
        self.organization_id = organization_id
        self.concurrency = max(1, concurrency)
        self.names = sub_grader_names(grader)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ftserve-rft-graders", daemon=True)
        self.thread.start()
        self.options: GradingOptions | None = None
        self._closers: list[Any] = []

    async def _options(self) -> GradingOptions:
        if self.options is None:
            sampler = await self._model_sampler() if _uses_model(self.grader) else None
            self.options = GradingOptions.from_settings(self.settings, sampler)
        return self.options

    async def _model_sampler(self) -> Any:
        import httpx

        from service.db import create_engine, create_sessionmaker
        from service.db.models import Organization
        from service.evals.sampler import GatewaySampler

        engine = create_engine(self.settings)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            organization = await session.get(Organization, self.organization_id)
        http = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0))
        self._closers += [http.aclose, engine.dispose]
        return GatewaySampler(sessionmaker, self.settings, http, organization)

    def grade_groups(self, items: list[dict[str, Any]], texts: list[list[str]]) -> list[GradedGroup]:
        """Each item's completions graded; per-sample failures are counted, never raised.

        The wait is bounded, so that no grader can hang the training thread: every call has a
        limit of its own (the python sandbox's wall clock, the model grader's HTTP timeout), and a
        round takes at most its waves of `concurrency` calls at `CALL_BOUND_S` each; past that the
        round is cancelled (sandboxes killed) and the step fails with `TimeoutError`."""
        waves = -(-sum(len(group) for group in texts) // self.concurrency)
        bound = waves * max(CALL_BOUND_S, self.settings.python_grader_timeout_s) + 30.0
        future = asyncio.run_coroutine_threadsafe(self._grade_all(items, texts), self.loop)
        try:
            return future.result(timeout=bound)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"Grading a step's samples took over {bound:g} s; a grader hangs.") from None

    async def _grade_all(self, items: list[dict[str, Any]], texts: list[list[str]]) -> list[GradedGroup]:
        options = await self._options()
        limit = asyncio.Semaphore(self.concurrency)

        async def one(item: dict[str, Any], text: str) -> Any:
            async with limit:
                return await grade(self.grader, sample_namespace(text), item, options)

        groups = []
        for item, group in zip(items, texts, strict=True):
            groups.append([asyncio.ensure_future(one(item, text)) for text in group])
        out = []
        for futures in groups:
            results = await asyncio.gather(*futures)
            graded = GradedGroup(rewards=[float(r.reward) for r in results])
            for name in self.names:
                graded.sub_rewards[name] = [float(r.sub_rewards.get(name, 0.0)) for r in results]
            failed = [r for r in results if r.errors.any()]
            graded.failures = len(failed)
            if failed:
                errors = failed[0].errors.as_dict()
                flags = [k for k, v in errors.items() if v is True]
                detail = errors.get("python_grader_runtime_error_details") or errors.get(
                    "model_grader_server_error_details"
                )
                graded.failure_detail = ", ".join(flags) + (f": {str(detail)[:300]}" if detail else "")
            out.append(graded)
        return out

    def close(self) -> None:
        async def closing() -> None:
            for close in self._closers:
                await close()

        asyncio.run_coroutine_threadsafe(closing(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
