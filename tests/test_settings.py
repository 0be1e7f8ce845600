"""Settings grouped per role: each role's class holds its own knobs, and `ftserve config` shows them."""

from __future__ import annotations

import subprocess

from service.settings import ROLES, ApiSettings, InferenceSettings, Settings, WorkerSettings
from service.settings.describe import describe
from tests.conftest import BIN


def test_each_role_sees_its_own_settings_and_not_the_others() -> None:
    api, worker, inference = (set(cls.model_fields) for cls in (ApiSettings, WorkerSettings, InferenceSettings))
    assert {"host", "max_json_body_bytes", "webhook_timeout_s"} <= api and not {"lease_s", "lora_r"} & api
    assert {"lease_s", "lora_r", "trainer_devices", "rft_sampler"} <= worker and not {"host", "port"} & worker
    assert {"inference_max_loras", "adapter_cache_bytes"} <= inference
    assert not {"database_url", "db_pool_size", "host", "lease_s"} & inference  # vLLM never sees the database
    assert set(Settings.model_fields) == api | worker | inference  # nothing lives outside a role


def test_environment_names_are_kept(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FTSERVE_LEASE_S", "7")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ftserve:hunter2@db/ftserve")
    monkeypatch.setenv("FTSERVE_INFERENCE_API_KEY", "k-123")
    settings = Settings()
    assert settings.lease_s == 7 and WorkerSettings().lease_s == 7
    assert settings.resolved_database_url() == "postgresql+asyncpg://ftserve:hunter2@db/ftserve"
    lines = "\n".join(describe(WorkerSettings))
    assert "FTSERVE_LEASE_S=7  # " in lines
    assert "DATABASE_URL=postgresql://ftserve:***@db/ftserve" in lines and "hunter2" not in lines
    assert "FTSERVE_INFERENCE_API_KEY=(set)" in lines and "k-123" not in lines


def test_config_command_prints_one_role() -> None:
    out = subprocess.run([str(BIN / "ftserve"), "config", "--role", "inference"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.startswith("# inference\n") and "FTSERVE_INFERENCE_MAX_LORAS=" in out
    assert "DATABASE_URL" not in out and "FTSERVE_LEASE_S" not in out
    assert set(ROLES) == {"api", "worker", "inference"}
