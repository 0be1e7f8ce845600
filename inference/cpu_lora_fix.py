"""Keeps base-model requests free of adapters when they share a batch with LoRA requests (CPU only).

vLLM 0.32's CPU LoRA kernels (`vllm.lora.ops.torch_ops`) pick each token's adapter weights with
`weights[token_lora_indices]`. Tokens of requests without an adapter carry index -1, which
indexing reads as "the last adapter slot": a base-model request batched beside adapter requests
quietly gets an adapter applied. The GPU kernels skip index -1. This wraps the three batched
ops so that rows with a negative index come out exactly as they went in.

Applied by `inference.plugin` in every vLLM process; a no-op on other platforms and when
applied twice. Remove it once the vLLM release in use skips index -1 on the CPU as well.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ftserve.inference")
OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")


def keep_rows_without_adapter(op: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(op)
    def run(inputs: Any, weights: Any, output: Any, indices: Any, *args: Any, **kwargs: Any) -> None:
        without = indices < 0
        if not bool(without.any()) or indices.shape[0] != output.shape[0]:
            op(inputs, weights, output, indices, *args, **kwargs)
            return
        if bool(without.all()):
            return  # no row has an adapter: nothing to add
        before = output[without].clone()
        op(inputs, weights, output, indices.clamp(min=0), *args, **kwargs)
        output[without] = before

    run.ftserve_fixed = True  # type: ignore[attr-defined]
    return run


def apply() -> int:
    """Wrap the ops where vLLM looks them up; returns how many were wrapped now."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return 0
    from vllm.lora.ops import torch_ops
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    wrapped = 0
    for name in OPS:
        current = getattr(lora_ops, name)
        if getattr(current, "ftserve_fixed", False):
            continue
        fixed = keep_rows_without_adapter(current)
        # lora_ops' own sgmv_* call these through module globals; punica_cpu imported them by name.
        for module in (lora_ops, torch_ops, punica_cpu):
            if hasattr(module, name):
                setattr(module, name, fixed)
        wrapped += 1
    if wrapped:
        log.info("CPU LoRA ops now leave tokens without an adapter untouched")
    return wrapped
