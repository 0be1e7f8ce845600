"""What a training run achieves: tokens per second and model FLOP utilisation (MFU).

    MFU = model FLOPs of the steps / their seconds / (peak_flops * devices)

A LoRA step's model FLOPs are 4 per parameter per token for the layers every token passes
through (2 forward, one multiply and one add per weight; 2 backward, for the activations'
gradients: the frozen base needs no weight gradients, which is why LoRA costs 4 and not the 6
of full training), and 4 per output-layer parameter only where logits are computed (labelled
positions; the trainer skips the rest). Input embeddings are a lookup and count nothing. A DPO
step adds a forward pass of the reference model (2 and 2). The adapter's own weight gradients
and the attention scores add a few percent that this leaves out, so MFU is slightly
understated. `peak_flops` is one device's dense bf16 peak: from the GPU's name, or set by the
operator (`FTSERVE_TRAINER_PEAK_FLOPS`) for any other device.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ModelFlops:
    """A model's parameters as the FLOP count sees them.

    Example:
        >>> ModelFlops(body=1_000, head=100).training(tokens=10, logits=4)
        41600
    """

    body: int
    """Parameters every token meets: all but the input embeddings and the output layer."""
    head: int
    """Output-layer parameters, met only where logits are computed."""

    @classmethod
    def of(cls, model: Any) -> ModelFlops:
        outputs = model.get_output_embeddings()
        lookups = [m for m in (model.get_input_embeddings(), outputs) if m is not None]
        skipped = {id(p) for module in lookups for p in module.parameters()}
        body = sum(p.numel() for p in model.parameters() if id(p) not in skipped)
        return cls(body=body, head=sum(p.numel() for p in outputs.parameters()) if outputs is not None else 0)

    def forward(self, tokens: int, logits: int) -> int:
        return 2 * (self.body * tokens + self.head * logits)

    def training(self, tokens: int, logits: int) -> int:
        """Forward and activation gradients of `tokens`, with logits at `logits` positions."""
        return 2 * self.forward(tokens, logits)


def model_flop_utilisation(flops: float, seconds: float, peak_flops: float, devices: int = 1) -> float:
    """The share of the devices' peak that the run's useful arithmetic reached.

    Example:
        >>> model_flop_utilisation(2e14, 1.0, 1e15)
        0.2
    """
    return flops / max(seconds, 1e-9) / (peak_flops * devices)
