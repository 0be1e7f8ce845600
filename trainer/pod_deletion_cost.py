"""A trainer pod tells Kubernetes whether it holds a job, so that a scale-down removes idle pods.

When a ReplicaSet shrinks, it deletes the pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first (then, among equals, the newest, which is
usually the busy one). A worker sets its own pod's cost high while it trains and low when it
is idle, so KEDA scaling the trainers down stops idle workers and leaves running jobs alone.

The patch is one HTTPS request to the in-cluster API server with the pod's service-account
token (RBAC: `patch` on `pods` in its namespace; see `deploy/k8s/base/trainer.yaml`). Outside
Kubernetes (no `POD_NAME`, `POD_NAMESPACE`, `KUBERNETES_SERVICE_HOST` or token) nothing is
done. A failed patch never fails a job: transient errors are retried, then a warning is logged.

    await mark_busy(True)   # the worker took a job
    await mark_busy(False)  # the job ended, however it ended
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST = 1_000_000
"""Cost while a job runs: far above any idle pod's (the annotation is an int32)."""
IDLE_COST = -1_000
"""Cost while idle: below a pod that has not said anything yet (0), so idle pods go first."""
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_S = 5.0
ATTEMPTS = 4


@dataclass(frozen=True)
class InCluster:
    """Where this pod's own object lives and how to reach the API server."""

    api_url: str
    """`https://host:port` of the API server (from `KUBERNETES_SERVICE_HOST`/`_PORT`)."""
    namespace: str
    pod: str
    token_file: Path
    """The service-account token, read at each request: projected tokens rotate."""
    ca_file: Path
    """The cluster's CA bundle, which the API server's certificate must chain to."""

    @property
    def pod_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.pod}"


def in_cluster(environ: Mapping[str, str] | None = None, service_account_dir: Path | None = None) -> InCluster | None:
    """This pod's coordinates, or None when not running in Kubernetes with a service account."""
    env = os.environ if environ is None else environ
    sa_dir = SERVICE_ACCOUNT_DIR if service_account_dir is None else service_account_dir
    pod, namespace, host = env.get("POD_NAME"), env.get("POD_NAMESPACE"), env.get("KUBERNETES_SERVICE_HOST")
    token_file, ca_file = sa_dir / "token", sa_dir / "ca.crt"
    if not (pod and namespace and host and token_file.is_file() and ca_file.is_file()):
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    return InCluster(f"https://{host}:{port}", namespace, pod, token_file, ca_file)


def _transient(exc: BaseException) -> bool:
    """Worth another try: the API server throttles, restarts or is briefly unreachable."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ssl.SSLError):
        return False  # a certificate that does not verify will not start verifying
    return isinstance(exc, urllib.error.URLError | OSError)


def _patch(cluster: InCluster, cost: int) -> None:
    body = json.dumps({"metadata": {"annotations": {ANNOTATION: str(cost)}}}).encode()
    request = urllib.request.Request(  # noqa: S310 (the URL is built from the cluster's https address)
        cluster.api_url + cluster.pod_path,
        data=body,
        method="PATCH",
        headers={
            "Authorization": f"Bearer {cluster.token_file.read_text().strip()}",
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        },
    )
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=context) as response:  # noqa: S310
        response.read()


async def set_deletion_cost(cluster: InCluster | None, busy: bool, *, attempts: int = ATTEMPTS) -> bool:
    """Patch the pod's deletion cost; True when it was applied. Never raises."""
    if cluster is None:
        return False
    cost = BUSY_COST if busy else IDLE_COST
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception(_transient),
            reraise=True,
        ):
            with attempt:
                await asyncio.to_thread(_patch, cluster, cost)
    except Exception as exc:
        # The job matters more than the hint: at worst a scale-down may pick this busy pod.
        log.warning("could not set %s=%d on pod %s: %s", ANNOTATION, cost, cluster.pod, exc)
        return False
    return True


async def mark_busy(busy: bool) -> None:
    """Say whether this worker holds a job; does nothing outside Kubernetes, never raises."""
    await set_deletion_cost(in_cluster(), busy)
