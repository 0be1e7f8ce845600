"""What a training run achieves: tokens per second and model FLOP utilisation (MFU).

    MFU = flops_per_token * tokens_per_second / (peak_flops * devices)

`flops_per_token` is 4N for LoRA training, N being every parameter of the model: the forward
pass costs 2N per token (one multiply and one add per weight), and the backward pass another 2N
for the gradients of the activations. The frozen base needs no weight gradients, which is what
makes LoRA cheaper than the 6N of full training; the adapter's own weight gradients and the
attention scores add a few percent that the formula leaves out, so MFU is slightly understated.
`tokens_per_second` counts every token the devices computed (real ones: packing leaves no
padding). `peak_flops` is one device's dense bf16 peak: from the GPU's name, or set by the
operator (`FTSERVE_TRAINER_PEAK_FLOPS`) for any other device.
"""

from __future__ import annotations

from typing import Any

import torch

PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
}
"""Dense bf16 peaks (no sparsity) by a part of the device name; the longest match wins."""


def device_peak_flops(device: torch.device) -> float | None:
    """One device's dense bf16 peak FLOP/s when it is a GPU of a known kind, else None.

    Example:
        >>> device_peak_flops(torch.device("cpu")) is None
        True
    """
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in PEAK_BF16_FLOPS if key in name]
    return PEAK_BF16_FLOPS[max(matches, key=len)] if matches else None


def flops_per_token(model: Any) -> float:
    """4N: forward and activation-gradient FLOPs of one token through a LoRA-wrapped model."""
    return 4.0 * sum(param.numel() for param in model.parameters())


def model_flop_utilisation(flops: float, tokens_per_second: float, peak_flops: float, devices: int = 1) -> float:
    """The share of the devices' peak that the run's useful arithmetic reached.

    Example:
        >>> model_flop_utilisation(4e9, 50_000, 1e15)
        0.2
    """
    return flops * tokens_per_second / (peak_flops * devices)
