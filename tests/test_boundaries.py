"""Process boundaries: the API never loads torch, transformers, peft or vllm; the light core
never loads the web layer. import-linter checks the static graph; this checks the real process."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import BIN

HEAVY = ("torch", "transformers", "peft", "vllm")


def test_api_process_imports_no_ml_stack() -> None:
    code = (
        "import sys; import service.api.app, service.cli; "
        "service.api.app.create_app(); "
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_light_core_imports_no_web_framework() -> None:
    code = (
        "import sys; import service.settings, service.db, service.db.models, service.storage, service.keys, "
        "service.datasets, service.errors, service.ids, service.sweeper, service.catalog, service.fine_tuning, "
        "service.queue, service.validation, service.reconciler, service.embedded, trainer.worker, trainer.job; "
        "loaded = [m for m in ('litestar', 'uvicorn', 'service.api') if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts() -> None:
    result = subprocess.run([str(BIN / "lint-imports")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
