"""Checks what `deploy/` ships: renders every Kustomize overlay, validates every object against
Kubernetes' schemas in strict mode, and checks the compose file against the Compose spec.

    .venv/bin/python deploy/check.py [--kubernetes-version 1.37.0]

Custom resources (KEDA's ScaledObject, the Gateway API's HTTPRoute) have no schema in the
validator's offline set: they are skipped explicitly, by name, in the output. The properties a
schema cannot see (Pod Security "restricted", secret scoping, probes, scaling) are checked by
`tests/test_deploy_manifests.py` on the same rendering. Exits non-zero on the first overlay
with an error.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
SKIPPED_GROUPS = ("keda.sh/", "gateway.networking.k8s.io/")
"""API groups whose objects are custom resources (KEDA, the Gateway API), not validated here."""


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        sys.exit(f"{name} is missing: install the dev extra")
    return found


def check_overlay(overlay: Path, version: str) -> int:
    rendered = subprocess.run([tool("kubectl"), "kustomize", str(overlay)], capture_output=True, text=True)
    if rendered.returncode != 0:
        print(f"{overlay.name}: kustomize failed:\n{rendered.stderr}")
        return 1
    errors = 0
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    for obj in objects:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith(SKIPPED_GROUPS):
            print(f"  {overlay.name}: skipped {label} ({obj['apiVersion']}: a custom resource, no offline schema)")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors += 1
            print(f"  {overlay.name}: INVALID {label}: {exc.message} at {'/'.join(map(str, exc.path))}")
        if "secret" in obj["kind"].lower() or "password" in yaml.safe_dump(obj.get("data", {})).lower():
            errors += 1
            print(f"  {overlay.name}: {label} carries a secret; the operator creates the Secrets (see the README)")
    print(f"{overlay.name}: {len(objects)} objects, {errors} invalid (Kubernetes {version}, strict)")
    return errors


def check_compose() -> int:
    compose = DEPLOY / "compose.yaml"
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
    )
    print(f"compose.yaml: {result.stdout.strip() or result.stderr.strip()}")
    return result.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", default="1.37.0")
    args = parser.parse_args()
    failures = sum(
        check_overlay(overlay, args.kubernetes_version)
        for overlay in sorted((DEPLOY / "k8s" / "overlays").iterdir())
        if overlay.is_dir()
    )
    failures += check_compose()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
