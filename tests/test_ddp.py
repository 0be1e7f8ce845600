"""Data parallelism: two gloo ranks on the CPU train the same adapter as one process on the same batches."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from tests.conftest import Stack, make_stack
from tests.support import all_events, free_port, qa_jsonl, wait_for_job
from trainer.tiny_model import ensure_tiny_chat

SCRIPT = Path(__file__).resolve().parent / "ddp_script.py"


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


def test_two_ranks_equal_one_device(tiny_chat: Path, tmp_path: Path) -> None:
    single, double = tmp_path / "single.pt", tmp_path / "double.pt"
    subprocess.run([sys.executable, str(SCRIPT), str(tiny_chat), str(single)], check=True, timeout=300)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
         str(SCRIPT), str(tiny_chat), str(double)],
        check=True, timeout=300,
    )  # fmt: skip
    one, two = torch.load(single), torch.load(double)
    assert (two["steps"], two["tokens"]) == (one["steps"], one["tokens"]) == (8, one["tokens"])
    assert abs(two["loss"] - one["loss"]) < 1e-4
    assert one["weights"].keys() == two["weights"].keys()
    for name, weight in one["weights"].items():
        # Only the order of float32 sums differs (per rank, then across); Adam carries it a little.
        torch.testing.assert_close(
            two["weights"][name], weight, atol=5e-5, rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}"
        )
    assert any(float(w.abs().sum()) > 0 for n, w in one["weights"].items() if "lora_B" in n)  # it did train


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = "redis://127.0.0.1:6379/7"  # workers started apart from `ftserve up` need a shared Redis
    redis.Redis.from_url(url).flushdb()
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("ddp"), REDIS_URL=url)
    try:
        yield stack
    finally:
        stack.stop()


def adapter_weights(stack: Stack, job: Any) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    key = f"jobs/{job.organization_id}/{job.id}/adapter/adapter_model.safetensors"
    return load(b"".join(stack.storage.read_chunks(key)))


def test_a_worker_trains_one_job_on_two_devices(stack: Stack) -> None:
    api = stack.start_api("--workers", "0", "--no-inference")
    client = api.client()
    training = client.files.create(file=("qa.jsonl", qa_jsonl()), purpose="fine-tune")
    hyperparameters = {"n_epochs": 3, "batch_size": 5}
    jobs = []
    for devices in ("2", "1"):
        worker = stack.start_worker(FTSERVE_TRAINER_DEVICES=devices)
        job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, seed=42,
                                             hyperparameters=hyperparameters)  # fmt: skip
        job = wait_for_job(client, job.id)
        assert job.status == "succeeded", job.error
        jobs.append(job)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    two, one = (adapter_weights(stack, job) for job in jobs)
    assert "Training on 2 devices (data parallel)" in [e.message for e in all_events(client, jobs[0].id)]
    assert jobs[0].trained_tokens == jobs[1].trained_tokens
    for name, weight in one.items():  # 12 steps at tiny-chat's large learning rate: float noise grows a little
        torch.testing.assert_close(two[name], weight, atol=5e-4, rtol=1e-2, msg=lambda m, n=name: f"{n}: {m}")
