"""Attention over packed rows one example at a time: variable-length attention.

A packed row holds several examples, and `position_ids` restart at 0 where each begins. The
stock `sdpa` path turns that into a block-diagonal mask over the whole row: it costs the row's
length squared whatever its examples' lengths, and a mask keeps sdpa off its causal fast path.
`segment_attention` runs causal attention on each example's span instead, so the cost is the sum
of the examples' squared lengths, no mask is built, and no token can see another example. Rows
can then be as long as a forward pass may be, and a step needs no padding at all.

On a GPU, in half precision, all spans go to one variable-length flash-attention call
(`torch.nn.attention.varlen`) instead of one call each. `use_segment_attention(model)` switches
a loaded model to this; with the flash-attn package installed on a GPU, transformers'
`flash_attention_2` does the same from the same `position_ids` and is chosen instead.

Padded batches must be padded on the right: under causal attention a real token never sees the
padding after it, so no mask is needed for them either.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

logger = logging.getLogger(__name__)

SEGMENT_ATTENTION = "ftserve_segments"
"""The name this implementation is registered under with transformers."""

_spans_cache = threading.local()
_varlen_usable: bool | None = None
"""Whether the fused GPU kernel ran forward and backward here (`None`: not probed yet)."""


def _spans(position_ids: torch.Tensor | None, rows: int, length: int) -> list[list[tuple[int, int]]]:
    """Each row's `(start, end)` spans: a new one wherever the position restarts at 0.

    Computed once per forward pass: every layer gets the same `position_ids` tensor.

    Example:
        >>> _spans(torch.tensor([[0, 1, 2, 0, 1]]), 1, 5)
        [[(0, 3), (3, 5)]]
    """
    if position_ids is None:
        return [[(0, length)]] * rows
    cached = getattr(_spans_cache, "entry", None)
    if cached is not None and cached[0] is position_ids and cached[1] == position_ids._version:
        return cached[2]
    starts: list[list[int]] = [[0] for _ in range(rows)]
    expanded = position_ids.expand(rows, -1) if position_ids.shape[0] != rows else position_ids
    for row, column in (expanded[:, 1:] == 0).nonzero().tolist():  # one host sync per pass
        starts[row].append(column + 1)
    spans = [[(s, e) for s, e in zip(row, [*row[1:], length], strict=True)] for row in starts]
    _spans_cache.entry = (position_ids, position_ids._version, spans)
    return spans


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: `query` is (batch, heads, length, head_dim);
    the result is (batch, length, heads, head_dim), as `sdpa` returns it."""
    del attention_mask  # never built for this implementation (see the module docstring)
    unsupported = [name for name in ("sliding_window", "softcap", "s_aux") if kwargs.get(name) is not None]
    if unsupported:  # `use_segment_attention` keeps such models on sdpa; never compute them wrongly
        raise ValueError(f"per-example attention does not implement {', '.join(unsupported)}")
    rows, heads, length, _dim = query.shape
    if key.shape[1] != heads:  # grouped-query attention: share each key/value head
        key = key.repeat_interleave(heads // key.shape[1], dim=1)
        value = value.repeat_interleave(heads // value.shape[1], dim=1)
    if key.shape[2] != length:  # queries after cached keys (generation): no packing there
        causal = torch.ones(length, key.shape[2], dtype=torch.bool, device=query.device).tril(key.shape[2] - length)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=causal, scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    spans = _spans(position_ids, rows, length)
    if dropout == 0.0:
        fused = _varlen(query, key, value, spans, scaling)
        if fused is not None:
            return fused, None

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return sdpa(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)

    if all(len(row) == 1 for row in spans):  # nothing packed: one causal call for the batch
        return attend(query, key, value).transpose(1, 2).contiguous(), None
    out_rows = []
    for row, row_spans in enumerate(spans):
        q, k, v = query[row : row + 1], key[row : row + 1], value[row : row + 1]
        pieces = [attend(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]) for s, e in row_spans]
        out_rows.append(torch.cat(pieces, dim=2))
    return torch.cat(out_rows, dim=0).transpose(1, 2).contiguous(), None


def _varlen(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    spans: list[list[tuple[int, int]]],
    scaling: float | None,
) -> torch.Tensor | None:
    """Every span of every row in one causal flash-attention call; None where that kernel is
    unusable (the CPU, float32, or a torch or GPU whose probe failed: see `_probe_varlen`)."""
    if query.device.type != "cuda" or query.dtype not in (torch.float16, torch.bfloat16):
        return None
    if _varlen_usable is None:
        _probe_varlen(query.device, query.dtype)
    if not _varlen_usable:
        return None
    from torch.nn.attention.varlen import varlen_attn

    rows, heads, length, dim = query.shape
    bounds = [row * length + start for row, row_spans in enumerate(spans) for start, _ in row_spans]
    cumulative = torch.tensor([*bounds, rows * length], dtype=torch.int32, device=query.device)
    longest = max(end - start for row_spans in spans for start, end in row_spans)

    def tokens_first(t: torch.Tensor) -> torch.Tensor:  # (rows, heads, length, dim) -> (tokens, heads, dim)
        return t.transpose(1, 2).reshape(rows * length, t.shape[1], dim)

    out = varlen_attn(tokens_first(query), tokens_first(key), tokens_first(value), cumulative, cumulative,
                      longest, longest, scale=scaling, window_size=(-1, 0))  # fmt: skip  # (-1, 0): causal
    return out.view(rows, length, heads, dim)


def _probe_varlen(device: torch.device, dtype: torch.dtype) -> None:
    """Run the fused kernel once, forward and backward, on a tiny input: a torch without it or a
    GPU it does not support means span by span for this process, decided once, not per call."""
    global _varlen_usable
    try:
        from torch.nn.attention.varlen import varlen_attn

        q = torch.randn(8, 2, 64, device=device, dtype=dtype, requires_grad=True)
        cumulative = torch.tensor([0, 3, 8], dtype=torch.int32, device=device)
        varlen_attn(q, q, q, cumulative, cumulative, 5, 5, window_size=(-1, 0)).sum().backward()
        torch.cuda.synchronize(device)
        _varlen_usable = True
    except Exception as exc:  # any failure of the probe only means: not this kernel
        logger.warning("variable-length flash attention unusable here, attending span by span: %s", exc)
        _varlen_usable = False


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)


def unsupported_features(config: Any) -> list[str]:
    """What a model's attention does that per-example attention does not implement.

    Example:
        >>> from transformers import MistralConfig
        >>> unsupported_features(MistralConfig(sliding_window=4096))
        ['sliding window']
    """
    found = []
    if getattr(config, "sliding_window", None) is not None:
        found.append("sliding window")
    if getattr(config, "attn_logit_softcapping", None) is not None:
        found.append("logit soft-capping")
    if getattr(config, "model_type", "") == "gpt_oss":
        found.append("attention sinks")
    return found


def use_segment_attention(model: Any) -> str:
    """Switch `model` (a transformers model, or a peft model around one) to per-example attention,
    or to `flash_attention_2` where flash-attn is installed and the model is on a GPU. A model
    whose attention has features this does not implement stays on `sdpa`, whose block-diagonal
    mask from the same `position_ids` is exact, only slower. Returns the implementation in use."""
    from transformers.utils import is_flash_attn_2_available

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    on_gpu = next(base.parameters()).device.type == "cuda"
    if on_gpu and is_flash_attn_2_available():
        base.set_attn_implementation("flash_attention_2")
        return "flash_attention_2"
    if unsupported_features(base.config):
        base.set_attn_implementation("sdpa")
        return "sdpa"
    _register()
    base.set_attn_implementation(SEGMENT_ATTENTION)
    return SEGMENT_ATTENTION
