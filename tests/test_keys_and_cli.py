"""API keys from the command line: printed once, stored hashed, tied to an organisation."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess

import pytest

from service.db import create_engine, create_sessionmaker, upgrade_database
from service.keys import authenticate, create_key, hash_key
from service.settings import Settings
from tests.conftest import BIN


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ftserve"), *args], capture_output=True, text=True, env=env)


def test_keys_create_prints_the_key_last_and_stores_only_its_hash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("keys", "create", "--org", "acme", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-ft-") and len(key) > 40

    with sqlite3.connect(tmp_path / "ftserve.db") as db:
        rows = db.execute("SELECT key_hash, lookup FROM api_keys").fetchall()
        orgs = db.execute("SELECT name FROM organizations").fetchall()
        dump = "\n".join(db.iterdump())
    assert rows == [(hash_key(key), key[6:18])]
    assert orgs == [("acme",)]
    assert key not in dump

    second = run_cli("keys", "create", "--org", "acme", "--data-dir", str(tmp_path))
    assert second.stdout.strip().splitlines()[-1] != key
    with sqlite3.connect(tmp_path / "ftserve.db") as db:
        assert db.execute("SELECT COUNT(*) FROM organizations").fetchone() == (1,)  # same org, new key


def test_data_dir_comes_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"FTSERVE_DATA_DIR": str(tmp_path / "d")}
    assert run_cli("keys", "create", "--org", "initech", env=env).returncode == 0
    assert (tmp_path / "d" / "ftserve.db").exists()


def test_bad_org_name_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("keys", "create", "--org", "Not A Slug!", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "organisation name" in result.stderr


def test_authenticate_accepts_only_the_exact_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    upgrade_database(settings)

    async def scenario() -> None:
        engine = create_engine(settings)
        async with create_sessionmaker(engine)() as session:
            org, _, key = await create_key(session, "acme")
            await session.commit()
            assert (await authenticate(session, key)).id == org.id  # type: ignore[union-attr]
            tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
            for wrong in (tampered, key[:-1], "sk-ft-", "", "Bearer " + key, key.replace("sk-ft-", "sk-xx-")):
                assert await authenticate(session, wrong) is None
        await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.parametrize("command", [["--help"], ["up", "--help"], ["keys", "create", "--help"], ["openapi", "--help"]])
def test_help(command: list[str]) -> None:
    result = run_cli(*command)
    assert result.returncode == 0
    assert "usage: ftserve" in result.stdout
