"""Data parallelism: two gloo ranks on the CPU train the same adapter as one process on the same batches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support import free_port
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
