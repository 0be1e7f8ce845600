"""The trainer on an NVIDIA GPU: a ~0.5B-parameter Llama built locally (no download), ftserve's
packed trainer against a plain Hugging Face `Trainer` + peft, a fixed number of steps each.

    python tests/benchmarks/gpu_check.py            (about 3 minutes on one H100-class GPU)

Prints real tokens/s of both, their ratio, and each one's model FLOP utilisation:

    MFU = 4 * N * tokens_per_second / peak_bf16_flops

N is the base model's parameter count. A LoRA step costs about 2N FLOPs per token forward
and 2N backward (activation gradients only: the base weights get none); the adapter and
attention add a few percent, which the formula leaves out, so MFU is slightly understated.
Peak bf16 dense FLOPs come from the device name (H100/H200 989e12, A100 312e12, L40S 362e12,
A10 125e12); set PEAK_FLOPS to override.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_trainer

PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def peak_flops() -> float:
    if "PEAK_FLOPS" in os.environ:
        return float(os.environ["PEAK_FLOPS"])
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAKS.items() if key in name), 989e12)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs an NVIDIA GPU")
        return 2
    # ~0.45B parameters: hidden 1024, 28 layers, MLP 2730, vocabulary 32000 (the tokenizer uses the first 640).
    sys.argv = [sys.argv[0], "--hidden", "1024", "--layers", "28", "--vocab", "32000", "--examples", "1024",
                "--epochs", "1", "--batch-size", "16", "--lr", "2e-4", "--peak-flops", str(peak_flops())]  # fmt: skip
    return bench_trainer.main()


if __name__ == "__main__":
    sys.exit(main())
