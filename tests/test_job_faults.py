"""Jobs under database, Redis and worker faults, end to end: `ftserve up`, workers, the SDK.

- every connection of the service cut while a job trains on a PostgreSQL cluster the test runs
  itself (so the machine's shared cluster is untouched), then that cluster restarted;
- a worker frozen (SIGSTOP) past its lease while a second worker takes the job over;
- Redis down when a job is created.

In each, the job's events and result file must tell one story: every step once.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Stack, make_stack
from tests.support import all_events, chat_jsonl, free_port, wait_for_event, wait_for_job

JOB = {"n_epochs": 10, "batch_size": 1}  # 100 examples: 1000 steps, a checkpoint every 100


def start_job(client: openai.OpenAI, hyperparameters: dict[str, int] = JOB) -> str:
    training = client.files.create(file=("t.jsonl", chat_jsonl(100)), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                          hyperparameters=hyperparameters).id  # fmt: skip


def assert_one_story(client: openai.OpenAI, job_id: str, total: int) -> None:
    """Succeeded; each step in at most one metrics event and one checkpoint; the result file has
    steps 1..total once."""
    job = wait_for_job(client, job_id, timeout_s=300)
    assert job.status == "succeeded", job.error
    steps = [int(e.data["step"]) for e in all_events(client, job_id) if e.type == "metrics"]  # type: ignore[index]
    assert len(steps) == len(set(steps)), f"a step was reported twice: {sorted(steps)}"
    assert max(steps) == total
    rows = base64.b64decode(client.files.content(job.result_files[0]).read()).decode().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, total + 1))
    checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id).data]
    assert len(checkpoints) == len(set(checkpoints))


# -- a PostgreSQL cluster of the test's own --------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else name


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Cluster:
    def __init__(self, root: Path) -> None:
        self.dir, self.port = root / "pgdata", free_port()
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"]),
                       check=True, capture_output=True)  # fmt: skip

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        command = [_pg_bin("pg_ctl"), "-D", str(self.dir), "-o", options, "-w", "-l", str(self.dir / "server.log")]
        subprocess.run(_as_postgres([*command, *args]), check=True, capture_output=True)

    def sql(self, statement: str, database: str = "postgres") -> object:
        import asyncpg

        async def run() -> object:
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database=database)
            try:
                return await conn.fetch(statement)
            finally:
                await conn.close()

        return asyncio.run(run())

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(name="cluster")
def fx_cluster() -> Iterator[Cluster]:
    # Not under pytest's temp dir: its 0700 parents would keep the `postgres` user out.
    root = Path(tempfile.mkdtemp(prefix="ftserve-pg-"))
    root.chmod(0o755)
    cluster = Cluster(root / "cluster")
    cluster.ctl("start")
    try:
        yield cluster
    finally:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(cluster.dir), "-m", "immediate", "stop"]),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_a_job_rides_out_cut_connections_and_a_database_restart(
    request: pytest.FixtureRequest, tmp_path: Path, cluster: Cluster
) -> None:
    cluster.sql("CREATE DATABASE ftserve")
    stack = make_stack(request, "sqlite-local", tmp_path, DATABASE_URL=cluster.url("ftserve"))
    try:
        client = stack.start_api("--workers", "1", "--no-inference").client()
        job_id = start_job(client, {"n_epochs": 15, "batch_size": 1})
        wait_for_event(client, job_id, lambda e: e.type == "metrics" and e.data["step"] > 50)  # type: ignore[index]
        for _ in range(3):
            cut = cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = 'ftserve' AND pid <> pg_backend_pid()")  # fmt: skip
            assert cut, "the service held connections to cut"
            time.sleep(1.5)
        cluster.ctl("restart", "-m", "fast")
        assert client.fine_tuning.jobs.retrieve(job_id).status == "running"  # the faults hit a training job
        assert_one_story(client, job_id, 1500)
        worker_log = (stack.data_dir / "logs" / "worker-1.log").read_text()
        assert "crashed" not in worker_log
        assert "lease lost" not in worker_log  # the outages were shorter than the lease
        assert "stopped responding" not in [e.message for e in all_events(client, job_id)]
    finally:
        stack.stop()


# -- a worker frozen past its lease ------------------------------------------------------------------


def _redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return proc
        time.sleep(0.1)
    raise RuntimeError("redis did not start")


@pytest.fixture(name="redis_port")
def fx_redis_port() -> Iterator[int]:
    port = free_port()
    proc = _redis(port)
    yield port
    proc.kill()


@pytest.fixture(name="leased")
def fx_leased(request: pytest.FixtureRequest, tmp_path: Path, redis_port: int) -> Iterator[Stack]:
    """SQLite, an API without workers (the test starts them), its own Redis, a 3 s lease."""
    stack = make_stack(request, "sqlite-local", tmp_path, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                       FTSERVE_LEASE_S="3")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


def start_worker(stack: Stack) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker and its log file (`Stack.start_worker` names it by the worker's place in `procs`)."""
    proc = stack.start_worker()
    return proc, stack.data_dir / f"worker-{len(stack.procs) - 1}.log"


def test_a_worker_frozen_past_its_lease_records_nothing_and_lets_go(leased: Stack) -> None:
    stack = leased
    client = stack.start_api("--workers", "0", "--no-inference").client()
    frozen, frozen_log = start_worker(stack)
    job_id = start_job(client)
    wait_for_event(client, job_id, lambda e: e.message == "Checkpoint created at step 100")
    frozen.send_signal(signal.SIGSTOP)
    wait_for_event(client, job_id, lambda e: "stopped responding" in e.message, timeout_s=60)
    stack.start_worker()
    wait_for_event(client, job_id, lambda e: e.message.startswith("Resuming from step"), timeout_s=60)
    thawed_at = time.monotonic()
    frozen.send_signal(signal.SIGCONT)
    while "lease lost" not in frozen_log.read_text():
        assert time.monotonic() - thawed_at < 10, "the thawed worker did not see that it lost the job"
        time.sleep(0.1)
    print(f"thawed worker let go after {time.monotonic() - thawed_at:.2f}s")
    assert_one_story(client, job_id, 1000)
    adapters = [k for k in stack.storage.list_keys("jobs/") if job_id in k and k.endswith("/adapter/ftserve.json")
                and "/checkpoints/" not in k]  # fmt: skip
    assert len(adapters) == 1
    assert "crashed" not in frozen_log.read_text()


def test_a_job_created_while_redis_is_down_is_answered_and_trains_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    port = free_port()
    redis_proc = _redis(port)
    stack = make_stack(request, "sqlite-local", tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        client = stack.start_api("--workers", "1", "--no-inference").client()
        training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
        redis_proc.kill()
        redis_proc.wait()
        job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                             hyperparameters={"n_epochs": 2})  # fmt: skip
        assert job.status == "validating_files"
        time.sleep(2)
        redis_proc = _redis(port)  # back, empty: only the reconciler can bring the job to it
        assert wait_for_job(client, job.id, timeout_s=120).status == "succeeded"
        messages = [e.message for e in all_events(client, job.id)]
        assert messages.count("Fine-tuning job started") == 1
        assert messages.count("Files validated, moving job to queued state") == 1
    finally:
        stack.stop()
        redis_proc.kill()


def test_a_sqlite_database_locked_past_the_lease_lets_no_two_workers_train_at_once(leased: Stack) -> None:
    import sqlite3

    stack = leased
    client = stack.start_api("--workers", "0", "--no-inference").client()
    first, first_log = start_worker(stack)
    job_id = start_job(client)
    wait_for_event(client, job_id, lambda e: e.message == "Checkpoint created at step 100")
    second, second_log = start_worker(stack)
    # Another writer holds the database for longer than SQLite's busy timeout (30 s) and the lease.
    blocker = sqlite3.connect(stack.data_dir / "ftserve.db", timeout=60)
    blocker.execute("BEGIN IMMEDIATE")
    time.sleep(35)
    blocker.rollback()
    blocker.close()
    assert_one_story(client, job_id, 1000)
    logs = first_log.read_text() + second_log.read_text()
    assert "lease lost" in logs  # the holder gave the job up rather than writing late
    assert "crashed" not in logs
    assert first.poll() is None and second.poll() is None
