"""Pieces of the HTTP edge on their own: JSON depth, pool exhaustion, log lines, the JSONL checkers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.api.errors import EXCEPTION_HANDLERS
from service.api.files.checks import JsonlChecks
from service.api.middleware.json_depth import MAX_JSON_DEPTH, json_depth, too_deep
from service.errors import InvalidFileError
from service.logging_config import REQUEST_ID, JsonFormatter, RequestIdFilter, TextFormatter
from service.settings import Settings
from service.storage import configured_storage
from tests.support import chat_jsonl


def nested(depth: int) -> bytes:
    value: object = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return json.dumps(value).encode()


def test_json_depth_counts_levels_and_ignores_brackets_in_strings() -> None:
    assert json_depth(nested(7)) == 7
    assert json_depth(json.dumps({"a": "[[[{{{", "b": [']]]\\"[[']}).encode()) == 2
    assert not too_deep(nested(MAX_JSON_DEPTH))
    assert too_deep(nested(MAX_JSON_DEPTH + 1))
    assert too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert not too_deep(json.dumps({"messages": [{"role": "user", "content": "[" * 5000}]}).encode())


def test_an_exhausted_pool_is_a_503_with_retry_after() -> None:
    @get("/busy")
    async def busy() -> None:
        raise PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached")

    with TestClient(Litestar([busy], exception_handlers=EXCEPTION_HANDLERS)) as client:
        response = client.get("/busy")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == {
        "message": "The server is busy: no database connection was free in time. Retry shortly.",
        "type": "service_unavailable_error",
        "param": None,
        "code": "server_busy",
    }


def _record(logger: str, message: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, None, None)
    record.fields = fields
    RequestIdFilter().filter(record)
    return record


def test_log_lines_carry_the_request_id_of_their_context() -> None:
    token = REQUEST_ID.set("req_abc")
    try:
        record = _record("ftserve.access", "GET /v1/files 200", status=200, route="/v1/files")
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "req_abc" and entry["status"] == 200 and entry["route"] == "/v1/files"
    assert entry["level"] == "info" and entry["logger"] == "ftserve.access"
    assert "[req_abc]" in TextFormatter().format(record)
    outside = _record("ftserve.api", "no request here")
    assert "request_id" not in json.loads(JsonFormatter().format(outside))


@pytest.fixture(name="checks")
def fx_checks(tmp_path: Path) -> Iterator[JsonlChecks]:
    checks = JsonlChecks(Settings(data_dir=tmp_path))
    yield checks
    checks.close()


def test_jsonl_checks_run_in_another_process(checks: JsonlChecks, tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_jsonl(50))
    asyncio.run(checks.check_file(good))
    workers = set(checks._pool._processes)  # type: ignore[union-attr]
    assert workers and os.getpid() not in workers

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(chat_jsonl(4) + b'{"messages": "nope"}\n')
    with pytest.raises(InvalidFileError) as caught:
        asyncio.run(checks.check_file(bad))
    assert "line 5" in caught.value.message and caught.value.param == "file"


def test_jsonl_checks_read_stored_objects(checks: JsonlChecks) -> None:
    configured_storage(checks.settings).put_stream("files/o/f", iter([b"not json\n"]))
    with pytest.raises(InvalidFileError) as caught:
        asyncio.run(checks.check_object("files/o/f"))
    assert caught.value.code == "invalid_json"
