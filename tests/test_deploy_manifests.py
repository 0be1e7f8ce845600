"""What a real cluster needs from `deploy/`, checked on the rendered manifests (`kubectl kustomize`
of each overlay, with the kubectl the dev extra installs), the compose file and the Dockerfiles.

Schema validity is `deploy/check.py`'s job; these are the properties a schema cannot see.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
OVERLAYS = ("single-node", "cluster")
OURS = "ghcr.io/ftserve/"
"""Images built from this repository (the others are PostgreSQL, Redis, SeaweedFS)."""
STREAM_S = 600
"""Longest SSE stream the gateway relays: pods must be allowed to finish one when stopping."""
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Obj = dict[str, Any]


def render(directory: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert kubectl, "kubectl is missing: install the dev extra"
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS, name="manifests")
def fx_manifests(request: pytest.FixtureRequest) -> list[Obj]:
    return render(DEPLOY / "k8s" / "overlays" / request.param)


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def pods(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            yield obj, pod_spec(obj)


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def all_containers(objs: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    for obj, spec in pods(objs):
        for container in containers(spec):
            yield obj, spec, container


def ours(container: Obj) -> bool:
    return container["image"].startswith(OURS)


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def uses_gpu(container: Obj) -> bool:
    return "nvidia.com/gpu" in container.get("resources", {}).get("limits", {})


# --- pods under Pod Security "restricted" -------------------------------------------------------


def test_every_container_runs_restricted(manifests: list[Obj]) -> None:
    for obj, spec, container in all_containers(manifests):
        where = f"{obj['metadata']['name']}/{container['name']}"
        pod, own = spec.get("securityContext", {}), container.get("securityContext", {})
        effective = {**pod, **own}
        assert effective.get("runAsNonRoot") is True, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert effective.get("seccompProfile", {}).get("type") == "RuntimeDefault", where


def test_writable_places_are_volumes(manifests: list[Obj]) -> None:
    """With a read-only root, HOME, TMPDIR, HF_HOME (and vLLM's caches) must be writable volumes."""
    for obj, spec, container in all_containers(manifests):
        if not ours(container) or container["name"] == "migrate":
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        writable = {
            m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", []) if not m.get("readOnly")
        }
        env = env_of(container)
        wanted = ["HOME", "TMPDIR"]
        if obj["metadata"]["name"] != "ftserve-api":
            wanted.append("HF_HOME")
        if "inference" in obj["metadata"]["name"]:
            wanted += ["VLLM_CACHE_ROOT", "TRITON_CACHE_DIR"]
        for name in wanted:
            assert name in env, f"{obj['metadata']['name']}: {name} unset"
            path = env[name]["value"]
            mount = [m for m in writable if path == m or path.startswith(m.rstrip("/") + "/")]
            assert mount, f"{obj['metadata']['name']}: {name}={path} is on the read-only root"
            volume = writable[mount[0]]
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, f"{name}: {volume}"
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{obj['metadata']['name']}: unbounded {name}"


def test_resources_include_ephemeral_storage(manifests: list[Obj]) -> None:
    for obj, _, container in all_containers(manifests):
        where = f"{obj['metadata']['name']}/{container['name']}"
        resources = container.get("resources", {})
        for key in ("cpu", "memory", "ephemeral-storage"):
            assert key in resources.get("requests", {}), f"{where}: no {key} request"
        for key in ("memory", "ephemeral-storage"):
            assert key in resources.get("limits", {}), f"{where}: no {key} limit"


def test_only_the_trainer_mounts_an_api_token(manifests: list[Obj]) -> None:
    """The trainer patches its own pod (deletion cost): the only pod with a token, and RBAC for just that."""
    for obj, spec in pods(manifests):
        if obj["metadata"]["name"] == "ftserve-trainer":
            assert spec["serviceAccountName"] == "ftserve-trainer"
            assert spec.get("automountServiceAccountToken", True) is True
            env = env_of(spec["containers"][0])
            assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        else:
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
    role = one(manifests, "Role", "ftserve-trainer")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    binding = one(manifests, "RoleBinding", "ftserve-trainer")
    assert binding["roleRef"]["name"] == "ftserve-trainer"
    assert binding["subjects"][0]["name"] == one(manifests, "ServiceAccount", "ftserve-trainer")["metadata"]["name"]


# --- secrets --------------------------------------------------------------------------------------


def secret_refs(container: Obj) -> dict[str, tuple[str, str]]:
    """Variable → (Secret, key) for every variable a container takes from a Secret."""
    assert not [e for e in container.get("envFrom", []) if "secretRef" in e], "a whole Secret imported"
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_each_role_has_its_own_secret_with_only_what_it_needs(manifests: list[Obj]) -> None:
    owners: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    for obj, _, container in all_containers(manifests):
        refs = secret_refs(container)
        for secret, _ in refs.values():
            owners.setdefault(secret, set()).add(obj["metadata"]["name"])
        seen.setdefault(obj["metadata"]["name"], set()).update(refs)
    assert all(len(names) == 1 for names in owners.values()), owners
    storage = {"STORAGE_URL", "FTSERVE_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert seen["ftserve-inference-llm"] == storage | {"FTSERVE_INFERENCE_API_KEY"}
    assert seen["ftserve-trainer"] == storage | {"DATABASE_URL", "REDIS_URL"}  # no inference key
    assert {"DATABASE_URL", "REDIS_URL", "FTSERVE_INFERENCE_API_KEY"} <= seen["ftserve-api"]
    for config in find(manifests, "ConfigMap"):
        assert not {"DATABASE_URL", "REDIS_URL", "AWS_SECRET_ACCESS_KEY"} & set(config["data"])


# --- network policies -----------------------------------------------------------------------------


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector matches `labels` (an empty selector matches every pod)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if (operator == "Exists" and value is None) or (operator == "DoesNotExist" and value is not None):
            return False
    return True


def pod_labels(objs: list[Obj]) -> dict[str, dict[str, str]]:
    return {obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["labels"] for obj, _ in pods(objs)}


def allowed_sources(objs: list[Obj], target: str) -> set[str] | None:
    """The workloads whose pods may connect to `target`'s pods, or None when no policy isolates them."""
    labels = pod_labels(objs)
    policies = [p for p in find(objs, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels[target])]
    policies = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not policies:
        return None
    sources: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            assert peers, f"{policy['metadata']['name']} admits every source"
            for peer in peers:
                assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: only pods of this namespace"
                sources |= {name for name, pod in labels.items() if selects(peer["podSelector"], pod)}
    return sources


def test_only_api_pods_reach_inference_pods(manifests: list[Obj]) -> None:
    inference = [name for name in pod_labels(manifests) if name.startswith("ftserve-inference-")]
    assert inference
    for name in inference:
        assert allowed_sources(manifests, name) == {"ftserve-api"}


def test_single_node_data_services_answer_only_the_service_pods() -> None:
    objs = render(DEPLOY / "k8s" / "overlays" / "single-node")
    for name in ("redis", "postgres"):
        assert allowed_sources(objs, name) == {"ftserve-api", "ftserve-trainer"}, name


def test_seaweedfs_requires_s3_credentials() -> None:
    objs = render(DEPLOY / "k8s" / "overlays" / "single-node")
    container = pod_spec(one(objs, "StatefulSet", "seaweedfs"))["containers"][0]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret_refs(container))
    assert "-s3.config=" in " ".join(container.get("command", []) + container.get("args", []))


# --- scaling, rollouts, stopping ------------------------------------------------------------------


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(manifests: list[Obj]) -> None:
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in find(manifests, "HorizontalPodAutoscaler")}
    targets |= {o["spec"]["scaleTargetRef"]["name"] for o in find(manifests, "ScaledObject")}
    assert {"ftserve-api", "ftserve-trainer"} <= targets
    for name in targets:
        assert "replicas" not in one(manifests, "Deployment", name)["spec"], name


def test_trainer_scaler_never_strands_a_job(manifests: list[Obj]) -> None:
    scaler = one(manifests, "ScaledObject", "ftserve-trainer")
    behavior = scaler["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["tolerance"] == 0  # 12 jobs on 11 trainers must add one
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    fallback = scaler["spec"]["fallback"]
    assert fallback["replicas"] >= 1 and fallback["failureThreshold"] >= 1
    assert fallback["behavior"] == "currentReplicasIfHigher"  # an outage never removes trainers
    namespace = scaler["metadata"]["namespace"]
    (trigger,) = scaler["spec"]["triggers"]
    url = trigger["metadata"]["url"]
    assert url == f"http://ftserve-api-metrics.{namespace}.svc.cluster.local/health/queue"
    # Reached even while a Redis blip makes every API pod unready (the count needs the database only).
    assert one(manifests, "Service", "ftserve-api-metrics")["spec"]["publishNotReadyAddresses"] is True


def test_scaler_url_follows_the_namespace(tmp_path: Path) -> None:
    """KEDA queries from its own namespace, so the URL must name ours: whatever the overlay says."""
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    for overlay in OVERLAYS:
        kustomization = tmp_path / "k8s" / "overlays" / overlay / "kustomization.yaml"
        text = kustomization.read_text()
        assert "namespace: ftserve\n" in text
        kustomization.write_text(text.replace("namespace: ftserve\n", "namespace: ml-prod\n"))
        scaler = one(render(kustomization.parent), "ScaledObject", "ftserve-trainer")
        assert scaler["spec"]["triggers"][0]["metadata"]["url"].startswith("http://ftserve-api-metrics.ml-prod.svc")


def test_gpu_rollouts_do_not_surge(manifests: list[Obj]) -> None:
    for deployment in find(manifests, "Deployment"):
        if not any(uses_gpu(c) for c in pod_spec(deployment)["containers"]):
            continue
        strategy = deployment["spec"].get("strategy", {})
        surge = strategy.get("rollingUpdate", {}).get("maxSurge")
        assert strategy.get("type") == "Recreate" or surge in (0, "0%"), deployment["metadata"]["name"]


def test_single_node_recreates_gpu_pods() -> None:
    objs = render(DEPLOY / "k8s" / "overlays" / "single-node")
    for name in ("ftserve-trainer", "ftserve-inference-llm"):
        assert one(objs, "Deployment", name)["spec"]["strategy"] == {"type": "Recreate"}


def test_streams_and_checkpoints_can_finish_when_a_pod_stops(manifests: list[Obj]) -> None:
    for name in ("ftserve-api", "ftserve-inference-llm"):
        spec = pod_spec(one(manifests, "Deployment", name))
        pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 5  # endpoints and the gateway stop sending new requests first
        assert spec["terminationGracePeriodSeconds"] >= pre_stop + STREAM_S, name
    assert pod_spec(one(manifests, "Deployment", "ftserve-trainer"))["terminationGracePeriodSeconds"] >= 600


def test_inference_has_a_disruption_budget_and_spreads(manifests: list[Obj]) -> None:
    deployment = one(manifests, "Deployment", "ftserve-inference-llm")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = one(manifests, "PodDisruptionBudget", "ftserve-inference-llm")
    assert all(labels.get(k) == v for k, v in budget["spec"]["selector"]["matchLabels"].items())
    (spread,) = pod_spec(deployment)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert all(labels.get(k) == v for k, v in spread["labelSelector"]["matchLabels"].items())


# --- probes ---------------------------------------------------------------------------------------


def test_probes_have_realistic_timeouts(manifests: list[Obj]) -> None:
    for obj, _, container in all_containers(manifests):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                assert container[kind].get("timeoutSeconds", 1) >= 3, f"{obj['metadata']['name']} {kind}"


def test_inference_start_allows_large_models(manifests: list[Obj]) -> None:
    container = pod_spec(one(manifests, "Deployment", "ftserve-inference-llm"))["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert "readinessProbe" in container and "livenessProbe" in container


def test_liveness_checks_only_the_process(manifests: list[Obj]) -> None:
    """A database or Redis outage must not restart pods: dependencies belong in readiness."""
    api = pod_spec(one(manifests, "Deployment", "ftserve-api"))["containers"][-1]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    trainer = pod_spec(one(manifests, "Deployment", "ftserve-trainer"))["containers"][0]
    # The worker's GET /health also queries the database: any HTTP answer proves the loop turns.
    assert "httpGet" not in trainer["livenessProbe"]
    assert "exec" in trainer["livenessProbe"]


# --- migrations, exposure, images -----------------------------------------------------------------


def test_migrations_run_before_the_api_serves(manifests: list[Obj]) -> None:
    assert not find(manifests, "Job"), "a fixed-name Job cannot be applied again with a new image"
    spec = pod_spec(one(manifests, "Deployment", "ftserve-api"))
    (init,) = spec["initContainers"]
    assert init["image"] == spec["containers"][0]["image"]
    assert "deploy/docker/migrate.py" in " ".join(init["command"])
    assert set(secret_refs(init)) == {"DATABASE_URL"}


def test_migrations_wait_for_the_lock_and_run_once(new_postgres_database: Callable[[], str]) -> None:
    """The init container's script against a real PostgreSQL: while another pod holds the lock it
    waits; then three pods starting together all succeed and leave the schema at head."""
    import asyncpg

    url = new_postgres_database()
    env = os.environ | {"DATABASE_URL": url, "PYTHONPATH": str(DEPLOY.parent)}
    script = [sys.executable, str(DEPLOY / "docker" / "migrate.py")]

    async def scenario() -> None:
        holder = await asyncpg.connect(url)
        await holder.execute("SELECT pg_advisory_lock($1)", 0x66747365)
        waiting = await asyncio.create_subprocess_exec(*script, env=env)
        done, _ = await asyncio.wait([asyncio.create_task(waiting.wait())], timeout=5)
        assert not done, "migrated while another pod held the lock"
        assert not await holder.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        await holder.execute("SELECT pg_advisory_unlock($1)", 0x66747365)
        assert await waiting.wait() == 0
        together = [await asyncio.create_subprocess_exec(*script, env=env) for _ in range(3)]
        assert [await p.wait() for p in together] == [0, 0, 0]
        heads = await holder.fetch("SELECT version_num FROM alembic_version")
        await holder.close()
        assert len(heads) == 1

    asyncio.run(scenario())


def test_delete_k_keeps_the_namespace_and_its_secrets(manifests: list[Obj]) -> None:
    assert not find(manifests, "Namespace")
    assert not find(manifests, "Secret")


def test_cluster_overlay_routes_clients_to_the_api() -> None:
    objs = render(DEPLOY / "k8s" / "overlays" / "cluster")
    route = one(objs, "HTTPRoute", "ftserve-api")
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "ftserve-api", "port": 80}]
    for key in ("request", "backendRequest"):
        assert int(rule["timeouts"][key].rstrip("s")) > STREAM_S
    assert route["spec"]["parentRefs"]


def test_images_are_pinned(manifests: list[Obj]) -> None:
    for _, _, container in all_containers(manifests):
        assert re.search(r"(:\d+\.\d+(\.\d+)?[^:/]*|@sha256:[0-9a-f]{64})$", container["image"]), container["image"]


# --- compose and images ---------------------------------------------------------------------------


def test_compose_gives_each_gpu_service_its_own_device() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    devices = []
    for name, service in compose["services"].items():
        for reservation in service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", []):
            assert "count" not in reservation, name
            devices += reservation["device_ids"]
        assert re.search(r":\d+\.\d+|@sha256:", service["image"]), f"{name}: {service['image']}"
    assert len(devices) == len(set(devices)) == 2


def test_images_install_dependencies_before_the_source_and_keep_secrets_out() -> None:
    for dockerfile in (DEPLOY / "docker").glob("*.Dockerfile"):
        # BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile before the context's own.
        ignored = Path(f"{dockerfile}.dockerignore").read_text().split()
        for pattern in ("deploy/.env", "**/.env", ".venv", ".cache", ".git"):
            assert pattern in ignored, f"{dockerfile.name}: {pattern} not ignored"
        text = dockerfile.read_text()
        assert text.index("COPY pyproject.toml") < text.index("COPY . /src"), dockerfile.name
        bases = re.findall(r"^ARG BASE_IMAGE=(\S+)|^FROM (\S+)", text, re.MULTILINE)
        for image in [a or b for a, b in bases if (a or b) != "${BASE_IMAGE}"]:
            assert re.search(r":v?\d+\.\d+\.\d+|@sha256:", image), f"{dockerfile.name}: {image}"
    install = (DEPLOY / "docker" / "install.sh").read_text()
    assert not re.search(r"(^|[\s(\"])python\s", install, re.MULTILINE), "install.sh must call python3"
