"""A trainer pod's deletion cost: the PATCH it sends to a real HTTPS server standing in for the
Kubernetes API server, its retries, and that a failure never escapes."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainer import pod_deletion_cost
from trainer.pod_deletion_cost import ANNOTATION, BUSY_COST, IDLE_COST, in_cluster, mark_busy, set_deletion_cost

TOKEN = "service-account-token-1"


@dataclass
class FakeApiServer:
    """What the server received, and the statuses it answers with (the last one repeats)."""

    port: int
    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[dict] = field(default_factory=list)


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(name="service_account")
def fx_service_account(tmp_path: Path) -> Path:
    """A service-account directory as Kubernetes mounts it: token and the CA that signed the server."""
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    cert, _ = _certificate(tmp_path, "server")
    (sa / "ca.crt").write_bytes(cert.read_bytes())
    (sa / "token").write_text(TOKEN + "\n")
    return sa


@pytest.fixture(name="api_server")
def fx_api_server(tmp_path: Path, service_account: Path) -> Iterator[FakeApiServer]:
    state = FakeApiServer(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            status = state.statuses[min(len(state.requests), len(state.statuses)) - 1]
            payload = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _environ(port: int) -> dict[str, str]:
    return {
        "POD_NAME": "ftserve-trainer-7d9c-x2x4k",
        "POD_NAMESPACE": "ml",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
    }


def test_busy_then_idle_patches_the_pods_own_annotation(api_server: FakeApiServer, service_account: Path) -> None:
    cluster = in_cluster(_environ(api_server.port), service_account)
    assert asyncio.run(set_deletion_cost(cluster, busy=True))
    assert asyncio.run(set_deletion_cost(cluster, busy=False))
    assert [r["path"] for r in api_server.requests] == ["/api/v1/namespaces/ml/pods/ftserve-trainer-7d9c-x2x4k"] * 2
    for request in api_server.requests:
        assert request["headers"]["Content-Type"] == "application/merge-patch+json"
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert [r["body"] for r in api_server.requests] == [
        {"metadata": {"annotations": {ANNOTATION: str(BUSY_COST)}}},
        {"metadata": {"annotations": {ANNOTATION: str(IDLE_COST)}}},
    ]
    assert IDLE_COST < 0 < BUSY_COST  # idle pods go before pods that never said, busy ones last


def test_the_token_is_read_again_for_each_patch(api_server: FakeApiServer, service_account: Path) -> None:
    cluster = in_cluster(_environ(api_server.port), service_account)
    asyncio.run(set_deletion_cost(cluster, busy=True))
    (service_account / "token").write_text("rotated-token")
    asyncio.run(set_deletion_cost(cluster, busy=False))
    assert [r["headers"]["Authorization"] for r in api_server.requests] == [f"Bearer {TOKEN}", "Bearer rotated-token"]


def test_transient_errors_are_retried(api_server: FakeApiServer, service_account: Path) -> None:
    api_server.statuses = [503, 429, 200]
    assert asyncio.run(set_deletion_cost(in_cluster(_environ(api_server.port), service_account), busy=True))
    assert len(api_server.requests) == 3


def test_a_refusal_is_not_retried_and_only_warns(
    api_server: FakeApiServer, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api_server.statuses = [403]  # no RBAC for the patch
    with caplog.at_level(logging.WARNING, logger=pod_deletion_cost.__name__):
        assert not asyncio.run(set_deletion_cost(in_cluster(_environ(api_server.port), service_account), busy=True))
    assert len(api_server.requests) == 1
    assert "403" in caplog.text and ANNOTATION in caplog.text


def test_an_unreachable_or_untrusted_server_never_raises(
    api_server: FakeApiServer, service_account: Path, tmp_path: Path
) -> None:
    other_ca, _ = _certificate(tmp_path, "other")
    (service_account / "ca.crt").write_bytes(other_ca.read_bytes())
    assert not asyncio.run(set_deletion_cost(in_cluster(_environ(api_server.port), service_account), busy=True))
    assert api_server.requests == []  # the handshake failed: the token never left
    environ = _environ(api_server.port) | {"KUBERNETES_SERVICE_PORT": "1"}  # nothing listens there
    assert not asyncio.run(set_deletion_cost(in_cluster(environ, service_account), busy=True, attempts=2))


def test_outside_kubernetes_there_is_nothing_to_patch(tmp_path: Path, service_account: Path) -> None:
    assert in_cluster({}, service_account) is None
    assert in_cluster(_environ(443), tmp_path / "no-service-account") is None
    without_pod = {k: v for k, v in _environ(443).items() if k != "POD_NAME"}
    assert in_cluster(without_pod, service_account) is None
    ipv6 = in_cluster(_environ(443) | {"KUBERNETES_SERVICE_HOST": "fd00::1"}, service_account)
    assert ipv6 is not None and ipv6.api_url == "https://[fd00::1]:443"


def test_mark_busy_uses_the_pods_environment(
    api_server: FakeApiServer, service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _environ(0):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pod_deletion_cost, "SERVICE_ACCOUNT_DIR", service_account)
    asyncio.run(mark_busy(True))  # not in a pod: nothing sent
    assert api_server.requests == []
    for name, value in _environ(api_server.port).items():
        monkeypatch.setenv(name, value)
    asyncio.run(mark_busy(True))
    assert api_server.requests[0]["body"] == {"metadata": {"annotations": {ANNOTATION: str(BUSY_COST)}}}
