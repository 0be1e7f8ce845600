"""Key lifecycle: list, revoke (seen by every API process within a second), expiry, admin keys.

Two `ftserve up` processes share one PostgreSQL database and one Redis, as two replicas of a
deployment do; Redis is a `redis-server` of the test's own, so that a test can stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from litestar import Litestar, Request, get
from litestar.di import NamedDependency, Provide
from litestar.testing import TestClient

from service.api.deps import provide_organization, require_admin
from service.api.errors import EXCEPTION_HANDLERS
from service.db import create_engine, create_sessionmaker, upgrade_database
from service.db.models import ApiKey, Organization
from service.embedded import redis_server_binary
from service.ids import now_s
from service.invalidation import publish
from service.keys import create_key, revoke_key
from service.settings import Settings
from tests.conftest import BIN, Stack, make_stack
from tests.support import free_port


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ftserve"), *args], env=env, capture_output=True, text=True, timeout=120)


def new_key(env: dict[str, str], *args: str) -> tuple[str, str]:
    """(key id, key) of a new key made by the CLI."""
    out = run_cli(env, "keys", "create", *args)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    return lines[1].split()[2].rstrip(";"), lines[-1]


class RedisServer:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir"]
        self.proc = subprocess.Popen([*argv, str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while run_redis_ping(self.port) is False:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_replicas(stack: Stack, count: int) -> list[str]:
    """`count` API processes (no worker, no inference) on the stack's database and Redis; their base URLs."""
    urls = []
    for _ in range(count):
        stack.env["FTSERVE_PORT"] = str(free_port())
        urls.append(stack.start_api("--no-inference", "--workers", "0").base_url)
    return urls


def status_of(base_url: str, key: str) -> int:
    return httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code


def seconds_until_refused(urls: list[str], key: str, since: float, give_up_s: float = 15.0) -> list[float]:
    """For each API process: seconds from `since` (monotonic) to its first 401 for `key`, polling all."""
    refused: dict[str, float] = {}
    while len(refused) < len(urls) and time.monotonic() - since < give_up_s:
        for url in urls:
            if url not in refused and status_of(url, key) == 401:
                refused[url] = time.monotonic() - since
        time.sleep(0.01)
    return [refused.get(url, float("inf")) for url in urls]


def db_settings(stack: Stack) -> Settings:
    return Settings(data_dir=stack.data_dir, database_url=stack.env["DATABASE_URL"])


async def revoke_in_database(settings: Settings, key_id: str) -> None:
    engine = create_engine(settings)
    async with create_sessionmaker(engine)() as session:
        assert await revoke_key(session, key_id) is not None
        await session.commit()
    await engine.dispose()


@pytest.fixture(scope="module", name="replicas")
def fx_replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, list[str], RedisServer]]:
    data_dir = tmp_path_factory.mktemp("replicas")
    redis = RedisServer(data_dir)
    stack = make_stack(request, "postgres-local", data_dir, REDIS_URL=redis.url)
    try:
        yield stack, start_replicas(stack, 2), redis
    finally:
        stack.stop()
        redis.stop()


def test_revoked_key_is_refused_by_both_api_processes_within_a_second(replicas) -> None:  # type: ignore[no-untyped-def]
    stack, urls, _ = replicas
    settings = db_settings(stack)
    announced_id, announced = new_key(stack.env, "--org", "acme")
    silent_id, silent = new_key(stack.env, "--org", "acme")
    for key in (announced, silent):
        assert [status_of(url, key) for url in urls] == [200, 200]  # now cached by both

    # Revoked in the database but not announced: both processes keep trusting their cache, so
    # what follows is the announcement's doing, not a short cache.
    asyncio.run(revoke_in_database(settings, silent_id))
    time.sleep(1.5)
    assert [status_of(url, silent) for url in urls] == [200, 200]

    asyncio.run(revoke_in_database(settings, announced_id))
    committed = time.monotonic()
    assert asyncio.run(publish(stack.env["REDIS_URL"], "api_key", announced_id)) >= 2
    delays = seconds_until_refused(urls, announced, committed)
    print(f"revocation seen by the two API processes after {delays[0] * 1000:.0f} ms and {delays[1] * 1000:.0f} ms")
    assert max(delays) < 1.0, delays


def test_cli_revoke_reaches_every_process(replicas) -> None:  # type: ignore[no-untyped-def]
    stack, urls, _ = replicas
    key_id, key = new_key(stack.env, "--org", "globex")
    assert [status_of(url, key) for url in urls] == [200, 200]
    out = run_cli(stack.env, "keys", "revoke", key_id)
    assert out.returncode == 0, out.stderr
    assert "2 API process(es)" in out.stdout
    done = time.monotonic()
    assert max(seconds_until_refused(urls, key, done)) < 1.0
    body = httpx.get(f"{urls[0]}/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["error"]["type"] == "authentication_error" and body["error"]["code"] == "invalid_api_key"

    again = run_cli(stack.env, "keys", "revoke", key_id)  # idempotent
    assert again.returncode == 0
    missing = run_cli(stack.env, "keys", "revoke", "key_doesnotexist")
    assert missing.returncode == 2 and "no key" in missing.stderr


def test_list_shows_every_key_but_never_a_key_or_its_hash(replicas) -> None:  # type: ignore[no-untyped-def]
    stack, urls, _ = replicas
    admin_id, admin = new_key(stack.env, "--org", "initech", "--admin")
    plain_id, plain = new_key(stack.env, "--org", "initech", "--expires-in", "30")
    assert status_of(urls[0], plain) == 200  # records its use

    out = run_cli(stack.env, "keys", "list", "--org", "initech")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split("\t") == ["id", "organization", "created", "last_used", "revoked", "expires", "admin"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert set(rows) == {admin_id, plain_id}
    assert rows[admin_id][1] == "initech" and rows[admin_id][6] == "yes" and rows[admin_id][5] == "-"
    assert rows[plain_id][6] == "no" and rows[plain_id][5] != "-" and rows[plain_id][4] == "-"

    everything = run_cli(stack.env, "keys", "list").stdout
    assert {"acme", "globex", "initech"} <= {line.split("\t")[1] for line in everything.splitlines()[1:]}
    from service.keys import hash_key

    for key in (admin, plain, stack.env["TEST_KEY"]):
        for text in (out.stdout, everything):
            assert key not in text and key[6:18] not in text and hash_key(key) not in text


def test_last_use_is_recorded_at_most_once_a_minute(replicas) -> None:  # type: ignore[no-untyped-def]
    stack, urls, _ = replicas
    key_id, key = new_key(stack.env, "--org", "acme")
    settings = db_settings(stack)

    async def last_used() -> int | None:
        engine = create_engine(settings)
        async with create_sessionmaker(engine)() as session:
            row = await session.get(ApiKey, key_id)
            value = row.last_used_at if row else None
        await engine.dispose()
        return value

    assert asyncio.run(last_used()) is None
    assert status_of(urls[0], key) == 200
    deadline = time.monotonic() + 5
    while (first := asyncio.run(last_used())) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first is not None and abs(first - now_s()) <= 5

    async def rewind() -> None:  # pretend the recorded use is 30 s old, within the minute
        engine = create_engine(settings)
        async with create_sessionmaker(engine)() as session:
            row = await session.get(ApiKey, key_id)
            assert row is not None
            row.last_used_at = first - 30
            await session.commit()
        await engine.dispose()

    asyncio.run(rewind())
    for url in urls * 3:
        assert status_of(url, key) == 200
    time.sleep(0.5)
    assert asyncio.run(last_used()) == first - 30  # neither process wrote again within the minute


def test_expired_key_gets_openais_401(replicas) -> None:  # type: ignore[no-untyped-def]
    stack, urls, _ = replicas
    _, key = new_key(stack.env, "--org", "acme", "--expires-in", str(3 / 86400))  # three seconds
    client = openai.OpenAI(base_url=urls[1], api_key=key, max_retries=0)
    assert client.models.list().data  # works, and is cached
    time.sleep(3.2)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.code == "invalid_api_key" and "expired" in caught.value.message
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}

    bad = run_cli(stack.env, "keys", "create", "--org", "acme", "--expires-in", "0")
    assert bad.returncode == 2


def test_redis_down_keys_are_trusted_for_at_most_a_second(replicas) -> None:  # type: ignore[no-untyped-def]
    """Runs last in this module: it stops the module's Redis."""
    stack, urls, redis = replicas
    key_id, key = new_key(stack.env, "--org", "acme")
    assert [status_of(url, key) for url in urls] == [200, 200]
    redis.stop()
    time.sleep(0.5)  # both processes notice the closed subscription
    asyncio.run(revoke_in_database(db_settings(stack), key_id))  # nobody can announce it
    revoked = time.monotonic()
    delays = seconds_until_refused(urls, key, revoked)
    print(f"with Redis down, revocation seen after {delays[0] * 1000:.0f} ms and {delays[1] * 1000:.0f} ms")
    assert max(delays) < 1.5, delays  # the cache's 1 s fallback lifetime, plus a request's time


def test_require_admin_answers_openais_403(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    upgrade_database(settings)

    async def make_keys() -> tuple[str, str]:
        engine = create_engine(settings)
        async with create_sessionmaker(engine)() as session:
            _, _, admin = await create_key(session, "acme", admin=True)
            _, _, plain = await create_key(session, "acme")
            await session.commit()
        await engine.dispose()
        return admin, plain

    admin, plain = asyncio.run(make_keys())

    @get("/v1/shared", dependencies={"organization": Provide(provide_organization)})
    async def shared(request: Request[Any, Any, Any], organization: NamedDependency[Organization]) -> dict[str, str]:
        return {"admin_of": require_admin(request).organization.name}

    @contextlib.asynccontextmanager
    async def state_lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.settings = settings
        app.state.sessionmaker = create_sessionmaker(engine)
        yield
        await engine.dispose()

    app = Litestar([shared], exception_handlers=EXCEPTION_HANDLERS, lifespan=[state_lifespan])
    with TestClient(app) as http:
        assert http.get("/v1/shared", headers={"Authorization": f"Bearer {admin}"}).json() == {"admin_of": "acme"}
        refused = http.get("/v1/shared", headers={"Authorization": f"Bearer {plain}"})
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"
        assert refused.json()["error"]["code"] == "insufficient_permissions"
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}


def test_cli_revoke_finds_the_private_redis_of_ftserve_up(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    stack = make_stack(request, "sqlite-local", tmp_path)  # no REDIS_URL: `ftserve up` starts its own Redis
    try:
        url = stack.start_api("--no-inference", "--workers", "0").base_url
        recorded = (tmp_path / "redis.url").read_text().strip()
        assert recorded.startswith("redis://:") and "@127.0.0.1:" in recorded  # with its password
        key_id, key = new_key(stack.env, "--org", "acme")
        assert status_of(url, key) == 200
        out = run_cli(stack.env, "keys", "revoke", key_id)
        assert out.returncode == 0 and "1 API process(es)" in out.stdout, out.stdout + out.stderr
        assert seconds_until_refused([url], key, time.monotonic())[0] < 1.0
    finally:
        stack.stop()
    assert not (tmp_path / "redis.url").exists()  # removed on the way out
    out = run_cli(stack.env, "keys", "revoke", stack_key_id(stack))
    assert out.returncode == 0 and "no running service found" in out.stdout


def stack_key_id(stack: Stack) -> str:
    listing = run_cli(stack.env, "keys", "list", "--org", "globex").stdout.strip().splitlines()
    return listing[1].split("\t")[0]
