"""Log-probabilities of a packed row's labels, computed where labels are, in bounded memory.

Every method's loss reads the same thing: for each position a label follows, the log-probability
the model gives that label (SFT sums their negatives, DPO sums them per sequence, RFT compares
them with the reference's). The output layer runs only at those positions: a prompt token's
logits would be a `vocabulary`-wide row computed for nothing.

Those rows are still the step's largest tensors: float32 logits, their softmax and its gradient
take about 12 bytes per label per vocabulary entry, so 1,000 labels on Gemma 3's 262,144-entry
vocabulary would need about 3 GiB at once. Past `LOGIT_BUDGET` entries the rows are computed in
chunks, each under activation checkpointing: the forward keeps only each chunk's hidden states
and the log-probabilities; the backward recomputes one chunk's logits at a time. A vocabulary of
SmolLM2's size (49,152) at a few hundred labels stays in one chunk, the plain path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from trainer.data import IGNORE_INDEX

LOGIT_BUDGET = 16 * 1024 * 1024
"""Logit entries (labels x vocabulary) computed at once: 64 MiB of float32 per chunk."""


def label_positions(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch of one row: the positions a label follows (on the host, where the labels are,
    so finding them needs no device sync), and those labels."""
    keep = (batch["labels"][0, 1:] != IGNORE_INDEX).nonzero().squeeze(1)
    return keep, batch["labels"][0, 1:][keep]


def labelled_token_logps(
    model: Any, batch: dict[str, torch.Tensor], *, budget: int = LOGIT_BUDGET
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a packed row (a batch of one): each label's log-probability (float32, with gradient),
    whether it was the model's top choice, and the positions they belong to (on the host).

    `model` is a transformers causal LM or a peft model around one; its decoder runs once over
    the row and its output layer only at the labelled positions, in chunks of at most `budget`
    logit entries.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = next(model.parameters()).device
    keep, labels = label_positions(batch)
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    hidden = causal_lm.get_decoder()(**inputs, use_cache=False).last_hidden_state[0, keep.to(device)]
    head = causal_lm.get_output_embeddings()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    labels = labels.to(device)
    rows = max(1, budget // max(int(head.weight.shape[0]), 1))
    if hidden.shape[0] <= rows:
        logps, correct = _chunk_logps(hidden, labels, head, softcap)
        return logps, correct, keep
    parts = [
        checkpoint(_chunk_logps, h, y, head, softcap, use_reentrant=False)
        for h, y in zip(hidden.split(rows), labels.split(rows), strict=True)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), keep


def _chunk_logps(
    hidden: torch.Tensor, labels: torch.Tensor, head: Any, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float()
    if softcap:  # Gemma 2's final logit soft-capping, where a config sets it
        logits = torch.tanh(logits / softcap) * softcap
    logps = torch.log_softmax(logits, dim=-1)
    return logps.gather(1, labels.unsqueeze(1)).squeeze(1), logits.argmax(-1) == labels
