"""The trainer on an NVIDIA GPU: a ~0.5B-parameter Llama built locally (no download), ftserve's
packed trainer against a plain Hugging Face `Trainer` + peft, a fixed number of steps each.

    python tests/benchmarks/gpu_check.py            (about 3 minutes on one H100-class GPU)

Prints real tokens/s of both, their ratio, and each one's model FLOP utilisation,
MFU = 4 * N * tokens_per_second / peak_bf16_flops (the formula and why: `trainer/throughput.py`).
The peak comes from the device name (`trainer.throughput.PEAK_BF16_FLOPS`); set PEAK_FLOPS to
override it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench_trainer

from trainer.throughput import device_peak_flops


def peak_flops() -> float:
    if "PEAK_FLOPS" in os.environ:
        return float(os.environ["PEAK_FLOPS"])
    peak = device_peak_flops(torch.device("cuda", 0))
    if peak is None:
        raise SystemExit(f"unknown peak for {torch.cuda.get_device_name()}: set PEAK_FLOPS")
    return peak


def check_fused_attention() -> None:
    """The one-call variable-length kernel equals attention span by span on this GPU, outputs and
    gradients; fails when the kernel is unusable here."""
    import trainer.attention as attention

    torch.manual_seed(0)
    positions = torch.cat([torch.arange(40), torch.arange(50), torch.arange(6)]).expand(2, -1).cuda()
    inputs = [torch.randn(2, 8, 96, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    upstream = torch.randn(2, 96, 8, 64, device="cuda", dtype=torch.bfloat16)
    results = []
    for fused in (True, False):
        attention._varlen_usable = None if fused else False  # None: probe; False: span by span
        q, k, v = (t.clone().requires_grad_() for t in inputs)
        out, _ = attention.segment_attention(torch.nn.Module(), q, k, v, None, position_ids=positions.clone())
        out.backward(upstream)
        results.append([out.float(), *(t.grad.float() for t in (q, k, v))])
        if fused and not attention._varlen_usable:
            raise SystemExit("attention: the fused variable-length kernel is unusable on this GPU")
    gap = max((a - b).abs().max().item() for a, b in zip(*results, strict=True))
    print(f"attention: fused variable-length kernel in use; largest difference to span by span, "
          f"outputs and gradients: {gap:.2e}")  # fmt: skip
    assert gap < 5e-2, gap
    attention._varlen_usable = None


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs an NVIDIA GPU")
        return 2
    check_fused_attention()
    # ~0.45B parameters: hidden 1024, 28 layers, MLP 2730, vocabulary 32000 (the tokenizer uses the first 640).
    sys.argv = [sys.argv[0], "--hidden", "1024", "--layers", "28", "--vocab", "32000", "--examples", "1024",
                "--epochs", "1", "--batch-size", "16", "--lr", "2e-4", "--peak-flops", str(peak_flops())]  # fmt: skip
    return bench_trainer.main()


if __name__ == "__main__":
    sys.exit(main())
