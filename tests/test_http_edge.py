"""The HTTP edge of a real `ftserve up`: slow and absent bodies, size and depth limits, field
limits, suffixes, disconnects, request ids and the access log, missing file bytes.

Raw sockets play the misbehaving clients (a stalled body, a 300 MB body without a key, a client
that hangs up), because no SDK can be made to misbehave that way.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Server, Stack, make_stack
from tests.support import chat_jsonl

IDLE_TIMEOUT_S = 6.0
BOUNDARY = "ftserveboundary"


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("edge")
    (data_dir / "tmp").mkdir()
    stack = make_stack(
        request,
        "sqlite-local",
        data_dir,
        FTSERVE_BODY_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S),
        FTSERVE_LOG_FORMAT="json",
        TMPDIR=str(data_dir / "tmp"),  # where multipart bodies are spooled
    )
    try:
        stack.server = stack.start_api("--no-inference")  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.stop()


@pytest.fixture(name="edge")
def fx_edge(stack: Stack) -> Server:
    return stack.server  # type: ignore[attr-defined,no-any-return]


def http(server: Server, key: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.base_url.removesuffix("/v1"), headers=headers, timeout=30)


def address(server: Server) -> tuple[str, int]:
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    return "127.0.0.1", port


def raw_request(server: Server, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection with the request line and headers sent, and no body yet."""
    sock = socket.create_connection(address(server), timeout=30)
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sock.sendall("\r\n".join(lines).encode())
    return sock


def read_response(sock: socket.socket, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on `sock` (the server closes or sizes it)."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_envelope(body: bytes | dict, status_type: str = "invalid_request_error") -> dict:  # type: ignore[type-arg]
    error = (json.loads(body) if isinstance(body, bytes) else body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == status_type
    return error  # type: ignore[no-any-return]


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def listing_latencies(server: Server, seconds: float) -> tuple[list[float], list[int]]:
    """`GET /v1/files` as the second organisation, back to back for `seconds`."""
    latencies, statuses = [], []
    with http(server, server.other_key) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                statuses.append(client.get("/v1/files").status_code)
            except httpx.HTTPError:
                statuses.append(-1)
            latencies.append(time.perf_counter() - started)
    return latencies, statuses


def spooled_files(stack: Stack) -> list[Path]:
    return list((stack.data_dir / "spool").glob("ftserve-upload-*"))


def test_stalled_uploads_hold_no_database_connection_and_are_cut(edge: Server, stack: Stack) -> None:
    with http(edge, edge.key) as client:
        upload = client.post(
            "/v1/uploads", json={"bytes": 10_000_000, "filename": "a.jsonl", "mime_type": "text/jsonl",
                                 "purpose": "fine-tune"},
        ).json()  # fmt: skip
    baseline, statuses = listing_latencies(edge, 3.0)
    assert set(statuses) == {200}

    preamble = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data"; filename="p"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    stalled = []
    for _ in range(50):
        sock = raw_request(
            edge, "POST", f"/v1/uploads/{upload['id']}/parts",
            {"authorization": f"Bearer {edge.key}", "content-type": f"multipart/form-data; boundary={BOUNDARY}",
             "content-length": "200000"},
        )  # fmt: skip
        sock.sendall(preamble + b"x" * 1000)  # then nothing more
        stalled.append(sock)
    started = time.monotonic()
    time.sleep(1.0)
    assert len(spooled_files(stack)) == 50  # every stalled body reached its handler
    during, statuses = listing_latencies(edge, IDLE_TIMEOUT_S - 2.5)
    assert set(statuses) == {200}, statuses
    print(
        f"\nlisting p99 {p99(baseline) * 1000:.1f} ms alone, {p99(during) * 1000:.1f} ms beside 50 stalled uploads"
        f" ({len(baseline)} and {len(during)} requests)"
    )
    assert p99(during) < 3 * p99(baseline)

    for sock in stalled:
        status, _, body = read_response(sock, timeout_s=IDLE_TIMEOUT_S + 10)
        assert status == 408
        assert assert_envelope(body)["code"] == "request_timeout"
        assert sock.recv(1) == b""  # and the connection is closed
        sock.close()
    assert time.monotonic() - started >= IDLE_TIMEOUT_S - 1.5
    assert spooled_files(stack) == []


def test_bodies_without_a_key_are_refused_unread(edge: Server, stack: Stack) -> None:
    api = psutil.Process(stack.procs[0].pid)
    rss_before = api.memory_info().rss
    declared = 300 * 1024 * 1024
    socks = [
        raw_request(edge, "POST", "/v1/fine_tuning/jobs",
                    {"content-type": "application/json", "content-length": str(declared)})
        for _ in range(10)
    ]  # fmt: skip
    sent = 256 * 1024
    for sock in socks:
        sock.sendall(b'{"model": "' + b"x" * (sent - 11))
    for sock in socks:
        status, headers, body = read_response(sock, timeout_s=10)  # long before the other 299.75 MB
        assert status == 401
        assert headers["connection"] == "close"
        assert assert_envelope(body, "authentication_error")["code"] == "missing_api_key"
        sock.close()
    growth = api.memory_info().rss - rss_before
    print(f"\nserver RSS grew by {growth / 2**20:.1f} MiB for 10 refused 300 MB bodies ({sent // 1024} KiB sent each)")
    assert growth < 50 * 2**20


def test_a_wrong_key_is_refused_before_the_body(edge: Server) -> None:
    sock = raw_request(
        edge, "POST", "/v1/fine_tuning/jobs",
        {"authorization": "Bearer sk-ft-not-a-real-key-at-all", "content-length": str(300 * 2**20)},
    )  # fmt: skip
    status, _, body = read_response(sock, timeout_s=10)
    assert status == 401 and assert_envelope(body, "authentication_error")["code"] == "invalid_api_key"


def test_a_declared_body_over_the_cap_is_413_before_reading(edge: Server) -> None:
    sock = raw_request(
        edge, "POST", "/v1/fine_tuning/jobs",
        {"authorization": f"Bearer {edge.key}", "content-type": "application/json", "content-length": str(2**21)},
    )  # fmt: skip
    status, headers, body = read_response(sock, timeout_s=10)
    assert status == 413 and headers["connection"] == "close"
    assert assert_envelope(body)["code"] == "request_too_large"


def test_a_streamed_body_over_the_cap_is_413(edge: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "'
        for _ in range(40):
            yield b"x" * 65536

    with http(edge, edge.key) as client:
        response = client.post("/v1/uploads", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_envelope(response.json())


def test_a_stalled_json_body_is_cut(edge: Server) -> None:
    sock = raw_request(
        edge, "POST", "/v1/fine_tuning/jobs",
        {"authorization": f"Bearer {edge.key}", "content-type": "application/json", "content-length": "1000"},
    )  # fmt: skip
    sock.sendall(b'{"model": ')
    status, _, body = read_response(sock, timeout_s=IDLE_TIMEOUT_S + 10)
    assert status == 408 and assert_envelope(body)["code"] == "request_timeout"


def test_deeply_nested_json_is_a_400(edge: Server) -> None:
    with http(edge, edge.key) as client:
        for depth in (1000, 100_000):
            body = (
                b'{"model": "tiny-chat", "training_file": "file-x", "metadata": ' + b"[" * depth + b"]" * depth + b"}"
            )
            response = client.post("/v1/fine_tuning/jobs", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, response.text
            assert assert_envelope(response.json())["code"] == "json_too_deep"
        shallow = {"model": "tiny-chat", "training_file": "file-x", "method": {"type": "supervised"}}
        response = client.post("/v1/fine_tuning/jobs", json=shallow)
        assert response.status_code in (400, 404) and "nested" not in response.text  # judged on its content


def _job(**overrides: object) -> dict[str, object]:
    return {"model": "tiny-chat", "training_file": "file-abc", **overrides}


def _wandb(**overrides: object) -> dict[str, object]:
    return {"type": "wandb", "wandb": {"project": "p", **overrides}}


LONG = "x" * 600
OVERLONG_FIELDS = [
    ("/v1/fine_tuning/jobs", _job(model="m" * 257), "model"),
    ("/v1/fine_tuning/jobs", _job(training_file="f" * 65), "training_file"),
    ("/v1/fine_tuning/jobs", _job(validation_file="f" * 65), "validation_file"),
    ("/v1/fine_tuning/jobs", _job(suffix="s" * 65), "suffix"),
    ("/v1/fine_tuning/jobs", _job(metadata={"k" * 65: "v"}), "metadata"),
    ("/v1/fine_tuning/jobs", _job(metadata={"k": LONG}), "metadata"),
    ("/v1/fine_tuning/jobs", _job(integrations=[_wandb(project=LONG)]), "integrations"),
    ("/v1/fine_tuning/jobs", _job(integrations=[_wandb(name=LONG)]), "integrations"),
    ("/v1/fine_tuning/jobs", _job(integrations=[_wandb(entity=LONG)]), "integrations"),
    ("/v1/fine_tuning/jobs", _job(integrations=[_wandb(tags=[LONG])]), "integrations"),
    ("/v1/uploads", {"bytes": 1, "filename": LONG, "mime_type": "text/jsonl", "purpose": "fine-tune"}, "filename"),
    ("/v1/uploads", {"bytes": 1, "filename": "a", "mime_type": LONG, "purpose": "fine-tune"}, "mime_type"),
    ("/v1/uploads", {"bytes": 1, "filename": "a", "mime_type": "text/jsonl", "purpose": LONG}, "purpose"),
]


@pytest.mark.parametrize(("path", "body", "field"), OVERLONG_FIELDS, ids=[f"{f}-{i}" for i, (_, _, f) in
                                                                          enumerate(OVERLONG_FIELDS)])  # fmt: skip
def test_an_overlong_stored_string_is_a_400_naming_its_field(
    edge: Server, path: str, body: dict[str, object], field: str
) -> None:
    with http(edge, edge.key) as client:
        response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    error = assert_envelope(response.json())
    assert error["param"] is not None and error["param"].startswith(field), error


def test_an_overlong_file_name_is_a_400(edge: Server) -> None:
    with http(edge, edge.key) as client:
        response = client.post(
            "/v1/files", files={"file": ("n" * 600 + ".jsonl", chat_jsonl(3))}, data={"purpose": "fine-tune"}
        )
    assert response.status_code == 400
    assert assert_envelope(response.json())["param"] == "file"


@pytest.mark.parametrize("suffix", ["../../x", "a/b", "line\nbreak", "right\u202eleft", "emoji\U0001f600", "a:b", " "])
def test_a_suffix_outside_its_character_set_is_a_400(edge: Server, suffix: str) -> None:
    with http(edge, edge.key) as client:
        response = client.post("/v1/fine_tuning/jobs", json=_job(suffix=suffix))
    assert response.status_code == 400
    assert assert_envelope(response.json())["param"] == "suffix"


def test_every_suffix_the_api_accepts_makes_a_retrievable_and_deletable_model(edge: Server, stack: Stack) -> None:
    suffix = "Ab9.-_..x"
    with http(edge, edge.key) as client:
        training = client.post("/v1/files", files={"file": ("t.jsonl", chat_jsonl(12))}, data={"purpose": "fine-tune"})
        job = client.post("/v1/fine_tuning/jobs", json=_job(training_file=training.json()["id"], suffix=suffix))
        assert job.status_code == 200, job.text
        job_id = job.json()["id"]
        assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
        # Stand in for a finished training run: the model id is what is under test, not training.
        model = f"ft:tiny-chat:acme:{suffix}:{job_id}"
        with sqlite3.connect(stack.data_dir / "ftserve.db") as db:
            db.execute("UPDATE fine_tuning_jobs SET status='succeeded', fine_tuned_model=? WHERE id=?", (model, job_id))
        assert client.get(f"/v1/models/{model}").json()["id"] == model
        assert client.delete(f"/v1/models/{model}").json() == {"id": model, "object": "model", "deleted": True}


def server_log(stack: Stack) -> list[dict[str, object]]:
    lines = (stack.data_dir / "server-0.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def wait_for_log(stack: Stack, request_id: str, timeout_s: float = 10) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in server_log(stack) if e.get("request_id") == request_id]
        if found:
            time.sleep(0.3)  # anything else the request logs comes right after
            return [e for e in server_log(stack) if e.get("request_id") == request_id]
        time.sleep(0.1)
    raise AssertionError(f"nothing logged for {request_id}")


def test_a_client_that_hangs_up_is_logged_once_at_info(edge: Server, stack: Stack) -> None:
    for path, content_type in (("/v1/files", f"multipart/form-data; boundary={BOUNDARY}"),
                               ("/v1/fine_tuning/jobs", "application/json")):  # fmt: skip
        request_id = f"hangup-{uuid.uuid4().hex[:8]}"
        sock = raw_request(
            edge, "POST", path,
            {"authorization": f"Bearer {edge.key}", "content-type": content_type, "content-length": "100000",
             "x-request-id": request_id},
        )  # fmt: skip
        sock.sendall(b"--" + BOUNDARY.encode() + b"\r\n" + b"x" * 500)
        time.sleep(0.3)
        sock.close()
        entries = wait_for_log(stack, request_id)
        assert [(e["level"], e["logger"], e["status"]) for e in entries] == [("info", "ftserve.access", 499)], entries
    text = (stack.data_dir / "server-0.log").read_text(errors="replace")
    assert "Exception in ASGI application" not in text and "disconnected prematurely" not in text
    assert not [
        e for e in server_log(stack) if e["level"] == "error" and e["logger"] in ("ftserve.api", "uvicorn.error")
    ]


def test_request_ids_and_the_access_line(edge: Server, stack: Stack) -> None:
    with http(edge, edge.key) as client:
        response = client.get("/v1/files/file-nope", headers={"x-request-id": "trace.42:abc-DEF_1"})
        assert response.headers["x-request-id"] == "trace.42:abc-DEF_1"
        (entry,) = wait_for_log(stack, "trace.42:abc-DEF_1")
        assert entry["logger"] == "ftserve.access" and entry["level"] == "info"
        assert {k: entry[k] for k in ("method", "route", "status", "org")} == {
            "method": "GET", "route": "/v1/files/{file_id}", "status": 404, "org": "acme",
        }  # fmt: skip
        assert isinstance(entry["duration_ms"], float)
        for insane in ("has space", "x" * 300, 'quote"d'):
            generated = client.get("/v1/files", headers={"x-request-id": insane}).headers["x-request-id"]
            assert generated.startswith("req_") and generated != insane
    log_text = (stack.data_dir / "server-0.log").read_text(errors="replace")
    assert edge.key not in log_text and edge.other_key not in log_text


def test_a_file_whose_bytes_are_missing_is_a_404(edge: Server, stack: Stack) -> None:
    with http(edge, edge.key) as client:
        file_id = client.post(
            "/v1/files", files={"file": ("t.jsonl", chat_jsonl(3))}, data={"purpose": "fine-tune"}
        ).json()["id"]
        (stored,) = (stack.data_dir / "objects" / "files").glob(f"*/{file_id}")
        stored.unlink()
        response = client.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 404
    assert assert_envelope(response.json())["code"] == "file_content_missing"


def test_fine_tune_uploads_are_still_checked_line_by_line(edge: Server) -> None:
    with http(edge, edge.key) as client:
        bad = chat_jsonl(2) + b'{"messages": [{"role": "robot", "content": "x"}]}\n'
        response = client.post("/v1/files", files={"file": ("t.jsonl", bad)}, data={"purpose": "fine-tune"})
        assert response.status_code == 400
        error = assert_envelope(response.json())
        assert error["code"] == "invalid_role" and "line 3" in error["message"]


def test_concurrent_listing_threads_see_no_error(edge: Server) -> None:
    """Eight clients of one organisation at once: the pool serves them all."""
    results: list[list[int]] = []

    def run() -> None:
        results.append(listing_latencies(edge, 1.5)[1])

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {s for r in results for s in r} == {200}
