"""No job is lost: workers killed or stopped mid-job, and a Redis that forgets everything.

Here the API runs without workers (`ftserve up --workers 0`) against an external Redis, and
each test starts and stops `ftserve worker` processes itself, as an orchestrator would.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from tests.conftest import Server, Stack, make_stack
from tests.support import all_events, chat_jsonl, free_port, wait_for_event, wait_for_http, wait_for_job

REDIS_DBS = {"sqlite-local": 5, "postgres-s3": 6}
JOB = {"n_epochs": 10, "batch_size": 1}  # 100 examples: 1000 steps, a checkpoint every 100


@pytest.fixture(scope="module", params=list(REDIS_DBS), name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"redis://127.0.0.1:6379/{REDIS_DBS[request.param]}"
    redis.Redis.from_url(url).flushdb()
    stack = make_stack(request, request.param, tmp_path_factory.mktemp(f"recovery-{request.param}"),
                       REDIS_URL=url, FTSERVE_LEASE_S="3")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="api")
def fx_api(stack: Stack) -> Server:
    return stack.start_api("--workers", "0", "--no-inference")


@pytest.fixture(name="client")
def fx_client(api: Server) -> openai.OpenAI:
    return api.client()


def start_job(client: openai.OpenAI) -> str:
    training = client.files.create(file=("t.jsonl", chat_jsonl(100)), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, hyperparameters=JOB).id


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=60)


def resumed_from(client: openai.OpenAI, job_id: str) -> list[int]:
    return [int(e.message.rsplit(" ", 1)[1]) for e in all_events(client, job_id) if e.message.startswith("Resuming")]


def assert_completed_every_step(client: openai.OpenAI, job_id: str) -> None:
    job = wait_for_job(client, job_id, timeout_s=240)
    assert job.status == "succeeded", job.error
    steps = [int(e.data["step"]) for e in all_events(client, job_id) if e.type == "metrics"]  # type: ignore[index]
    assert steps[-1] == 1000
    csv_rows = client.files.content(job.result_files[0]).read()
    assert csv_rows  # the result file covers the whole run, resumed part included
    import base64

    lines = base64.b64decode(csv_rows).decode().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in lines] == list(range(1, 1001))


def test_a_killed_worker_loses_only_the_steps_since_its_last_checkpoint(stack: Stack, client: openai.OpenAI) -> None:
    worker = stack.start_worker()
    job_id = start_job(client)
    wait_for_event(client, job_id, lambda e: e.message == "Checkpoint created at step 100")
    stop(worker, signal.SIGKILL)
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job_id).data[0].step_number
    assert client.fine_tuning.jobs.retrieve(job_id).status == "running"  # the database still thinks so

    stack.start_worker()  # the lease lapses, the reconciler requeues, this worker resumes
    wait_for_event(client, job_id, lambda e: "stopped responding" in e.message)
    assert_completed_every_step(client, job_id)
    assert resumed_from(client, job_id) == [checkpoint]


def test_sigterm_checkpoints_the_job_for_the_next_worker(stack: Stack, client: openai.OpenAI) -> None:
    for proc in stack.procs[1:]:
        if proc.poll() is None:
            stop(proc, signal.SIGTERM)
    first = stack.start_worker()
    job_id = start_job(client)
    wait_for_event(client, job_id, lambda e: e.type == "metrics" and e.data["step"] > 150)  # type: ignore[index]
    stop(first, signal.SIGTERM)  # as a node drain does; the worker exits once the job is saved
    event = wait_for_event(client, job_id, lambda e: "shutting down" in e.message)
    saved = int(event.message.split("saved step ")[1].split(" ")[0])
    assert saved > 150
    assert client.fine_tuning.jobs.retrieve(job_id).status == "queued"

    stack.start_worker()
    assert_completed_every_step(client, job_id)
    assert resumed_from(client, job_id) == [saved]  # not one step lost


def test_jobs_survive_a_flushed_redis(stack: Stack, api: Server, client: openai.OpenAI) -> None:
    for proc in stack.procs[1:]:
        if proc.poll() is None:
            stop(proc, signal.SIGTERM)
    training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
    jobs = [
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, hyperparameters={"n_epochs": 1})
        for _ in range(2)
    ]
    for job in jobs:
        wait_for_job(client, job.id, ("queued",))
    depth = httpx.get(api.base_url.removesuffix("/v1") + "/health/queue").json()
    assert depth == {"queued": 2, "running": 0, "wanted_trainers": 2}  # what the autoscaler reads
    redis.Redis.from_url(stack.env["REDIS_URL"]).flushdb()  # Redis restarted without persistence

    port = free_port()
    stack.start_worker(FTSERVE_WORKER_HEALTH_PORT=str(port))
    wait_for_http(f"http://127.0.0.1:{port}/health")
    assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ok"
    for job in jobs:
        assert wait_for_job(client, job.id, timeout_s=120).status == "succeeded"
    assert httpx.get(api.base_url.removesuffix("/v1") + "/health/queue").json()["wanted_trainers"] == 0


def test_readiness_checks_the_database_and_redis(api: Server) -> None:
    response = httpx.get(api.base_url.removesuffix("/v1") + "/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
