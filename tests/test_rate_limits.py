"""Per-organisation limits: active jobs at once, and requests per key shared by every API process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from service.db import create_engine, create_sessionmaker, upgrade_database
from service.db.models import FineTuningJob
from service.errors import FtserveError
from service.ids import new_id, now_s
from service.keys import get_or_create_organization
from service.rate_limits import RateLimitError, check_active_job_limit, duration
from service.settings import Settings
from tests.conftest import Stack, make_stack
from tests.test_keys_lifecycle import RedisServer, new_key, start_replicas

LIMIT = 3
WINDOW_S = 3
"""Longer than the SDK's own two backoffs (0.5 s and 1 s, at most): a retry only succeeds in
time if it waited for `Retry-After`."""


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_active_job_limit(database: str, tmp_path, new_postgres_database: Callable[[], str]) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=new_postgres_database() if database == "postgres" else None)
    upgrade_database(settings)

    async def scenario() -> None:
        engine = create_engine(settings)
        async with create_sessionmaker(engine)() as session:
            acme = await get_or_create_organization(session, "acme")
            globex = await get_or_create_organization(session, "globex")

            def job(org_id: str, status: str) -> FineTuningJob:
                return FineTuningJob(
                    id=new_id("ftjob-"), organization_id=org_id, model="tiny-chat", base_model="tiny-chat",
                    training_file="file-x", seed=1, method={"type": "supervised"}, status=status,
                    result_files=[], created_at=now_s(),
                )  # fmt: skip

            # Finished, paused and other organisations' jobs do not count.
            for status in ("succeeded", "failed", "cancelled", "paused"):
                session.add(job(acme.id, status))
            for _ in range(3):
                session.add(job(globex.id, "running"))
            session.add(job(acme.id, "validating_files"))
            session.add(job(acme.id, "queued"))
            await session.commit()
            await check_active_job_limit(session, acme.id, 3)
            await check_active_job_limit(session, acme.id, 0)  # 0: no limit

            session.add(job(acme.id, "running"))
            await session.commit()
            with pytest.raises(RateLimitError) as caught:
                await check_active_job_limit(session, acme.id, 3)
            error = caught.value
            assert isinstance(error, FtserveError) and error.status == 429
            assert error.envelope()["error"]["type"] == "rate_limit_error"
            assert error.envelope()["error"]["code"] == "active_job_limit_exceeded"
            assert error.envelope()["error"]["param"] is None
            await check_active_job_limit(session, acme.id, 4)
        await engine.dispose()

    asyncio.run(scenario())


def test_reset_durations_in_openais_format() -> None:
    assert [duration(s) for s in (0.0, 0.85, 1.5, 20, 59.9994, 360, 90.4)] == [
        "0ms", "850ms", "1.5s", "20s", "59.999s", "6m0s", "1m30s",
    ]  # fmt: skip


@pytest.fixture(scope="module", name="limited")
def fx_limited(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, list[str]]]:
    """Two API processes on one database and one Redis, with a tight request limit."""
    data_dir = tmp_path_factory.mktemp("limited")
    redis = RedisServer(data_dir)
    stack = make_stack(
        request, "postgres-local", data_dir, REDIS_URL=redis.url,
        FTSERVE_KEY_REQUEST_LIMIT=str(LIMIT), FTSERVE_KEY_REQUEST_WINDOW_S=str(WINDOW_S),
    )  # fmt: skip
    try:
        yield stack, start_replicas(stack, 2)
    finally:
        stack.stop()
        redis.stop()


def test_request_limit_is_shared_by_api_processes_and_answers_429_with_headers(limited) -> None:  # type: ignore[no-untyped-def]
    stack, urls = limited
    _, key = new_key(stack.env, "--org", "acme")
    headers = {"Authorization": f"Bearer {key}"}
    answers = [httpx.get(f"{urls[i % 2]}/models", headers=headers) for i in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [200] * LIMIT + [429]
    for used, answer in enumerate(answers[:LIMIT], start=1):
        assert answer.headers["x-ratelimit-limit-requests"] == str(LIMIT)
        assert answer.headers["x-ratelimit-remaining-requests"] == str(LIMIT - used)
        assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "retry-after" not in answer.headers
    refused = answers[-1]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_S
    assert 0 < int(refused.headers["retry-after-ms"]) <= WINDOW_S * 1000

    # Per key: another key of the same organisation has its own count; requests without a key none.
    _, other = new_key(stack.env, "--org", "acme")
    assert httpx.get(f"{urls[0]}/models", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    unauthenticated = httpx.get(f"{urls[0]}/models")
    assert unauthenticated.status_code == 401 and "x-ratelimit-limit-requests" not in unauthenticated.headers


def test_sdk_retry_honours_retry_after(limited) -> None:  # type: ignore[no-untyped-def]
    stack, urls = limited
    _, key = new_key(stack.env, "--org", "globex")
    impatient = openai.OpenAI(base_url=urls[0], api_key=key, max_retries=0)
    for _ in range(LIMIT):
        impatient.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        impatient.models.list()
    assert caught.value.code == "rate_limit_exceeded"
    wait_s = float(caught.value.response.headers["retry-after-ms"]) / 1000

    patient = openai.OpenAI(base_url=urls[1], api_key=key, max_retries=2)
    started = time.monotonic()
    page = patient.models.with_raw_response.list()
    waited = time.monotonic() - started
    print(f"the SDK waited {waited:.2f} s for a window that had {wait_s:.2f} s left")
    assert page.http_request.headers["x-stainless-retry-count"] != "0"  # it was refused, then retried
    assert page.headers["x-ratelimit-remaining-requests"] == str(LIMIT - 1)
