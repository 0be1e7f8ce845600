"""Supervised LoRA fine-tuning: synchronous torch code, testable on a tiny model.

Packing, the token loss and `SFTObjective` live here; the loop itself is `trainer.loop.run`.
The async worker only orchestrates: `trainer.job` calls `train()` in a thread and hears back
through a `TrainingCallbacks` object (metrics, checkpoints, whether to stop).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.attention import use_segment_attention
from trainer.data import IGNORE_INDEX, TokenizedExample
from trainer.loop import (  # the loop's types, used here and re-exported for the methods' modules
    LoraSettings,
    SFTConfig,
    StepOutcome,
    StopRequest,
    TrainingCallbacks,
    TrainResult,
    run,
)
from trainer.token_logps import labelled_token_logps

__all__ = ["LoraSettings", "SFTConfig", "StepOutcome", "StopRequest", "TrainResult", "TrainingCallbacks"]

logger = logging.getLogger(__name__)


def _pack_rows(examples: list[TokenizedExample], budget: int) -> list[list[TokenizedExample]]:
    """First-fit decreasing: as few rows as hold the examples within `budget` tokens each."""
    rows: list[list[TokenizedExample]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: len(e.input_ids), reverse=True):
        size = len(example.input_ids)
        for index, left in enumerate(room):
            if size <= left:
                rows[index].append(example)
                room[index] -= size
                break
        else:
            rows.append([example])
            room.append(budget - size)
    return rows


def pack(examples: list[TokenizedExample]) -> dict[str, torch.Tensor]:
    """One row of examples laid end to end, as a batch of one, with no padding.

    `position_ids` restart at 0 for each example; attention reads them to keep each example to
    itself. The first label of each example is ignored, so the last token of one example is never
    trained to predict the first of the next.

    Example:
        >>> pack([TokenizedExample([5, 6], [-100, 6]), TokenizedExample([7, 8, 9], [-100, 8, 9])])["position_ids"]
        tensor([[0, 1, 0, 1, 2]])
    """
    lengths = [len(example.input_ids) for example in examples]
    labels = np.concatenate([example.labels for example in examples])
    labels[np.cumsum([0, *lengths[:-1]])] = IGNORE_INDEX  # each example's first label
    return {
        "input_ids": torch.from_numpy(np.concatenate([example.input_ids for example in examples])).long()[None],
        "labels": torch.from_numpy(labels).long()[None],
        "position_ids": torch.from_numpy(np.concatenate([np.arange(n) for n in lengths])).long()[None],
    }


def microbatches(examples: list[TokenizedExample], pad_id: int, config: SFTConfig) -> list[dict[str, torch.Tensor]]:
    """The forward passes of one optimizer step: one packed row each, or one padded batch."""
    if not config.pack:
        return [_collate(examples, pad_id)]
    limit = config.max_tokens_per_microbatch or (16_384 if torch.cuda.is_available() else 4_096)
    budget = max(limit, max(len(e.input_ids) for e in examples))
    return [pack(row) for row in _pack_rows(examples, budget)]


def _collate(examples: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.from_numpy(example.input_ids)
        labels[row, :n] = torch.from_numpy(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def loss_sums(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed token loss over labelled positions, and the count of correct predictions.

    A packed batch carries `position_ids` and no `attention_mask`; a padded one the reverse.
    For a single (packed) row, logits are computed only where a label follows, in bounded memory
    (`trainer.token_logps`): the output layer and the loss skip the prompt tokens entirely.
    """
    if batch["labels"].shape[0] == 1:
        logps, correct, _ = labelled_token_logps(model, batch)
        return -logps.sum(), correct.sum()
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    targets = batch["labels"][:, 1:].to(device)
    shifted = model(**inputs, use_cache=False).logits[:, :-1].float()
    valid = targets != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, ((shifted.argmax(-1) == targets) & valid).sum()


def labelled(batch: dict[str, torch.Tensor]) -> int:
    """Positions that carry loss (after the shift by one)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def loss_and_accuracy(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean token loss over labelled positions, token accuracy, and the count of labelled tokens."""
    count = labelled(batch)
    loss, correct = loss_sums(model, batch)
    return loss / max(count, 1), correct / max(count, 1), count


@torch.no_grad()
def evaluate(model: Any, examples: list[TokenizedExample], pad_id: int, batch_size: int = 8) -> dict[str, float]:
    model.eval()
    total_loss = total_correct = total = 0.0
    for start in range(0, len(examples), batch_size):
        loss, accuracy, count = loss_and_accuracy(model, _collate(examples[start : start + batch_size], pad_id))
        total_loss += float(loss) * count
        total_correct += float(accuracy) * count
        total += count
    model.train()
    return {"loss": total_loss / max(total, 1), "accuracy": total_correct / max(total, 1)}


def training_device() -> torch.device:
    """This process's GPU (`LOCAL_RANK` picks one among several), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def load_lora_model(
    base_path: Path,
    lora: LoraSettings,
    *,
    seed: int,
    device: torch.device | None = None,
    gradient_checkpointing: bool = False,
) -> Any:
    """The base model with a fresh LoRA adapter, attending per example (`trainer.attention`).

    On a GPU the frozen base is bf16 and the adapter float32 (its optimizer state stays exact),
    and Liger's fused kernels are applied when `liger-kernel` is installed; on the CPU everything
    is float32.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    device = device or training_device()
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    if device.type == "cuda":
        _apply_fused_kernels(base)
    if gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, which a frozen base lacks.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    use_segment_attention(model)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model


def _apply_fused_kernels(base: Any) -> None:
    """Liger's RMSNorm, RoPE and SwiGLU kernels, where installed; the loss stays ours (it computes
    logits only at labelled positions). A model Liger does not know is left as it is."""
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return
    try:
        _apply_liger_kernel_to_instance(model=base, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)  # fmt: skip
    except Exception as exc:  # an unsupported architecture must not fail the job
        logger.warning("Liger kernels not applied: %s", exc)


class SFTObjective:
    """Next-token loss on assistant tokens, averaged over the step's tokens, on packed rows."""

    reference_passes = 0

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def normaliser(self, items: list[TokenizedExample]) -> int:
        # Labelled positions after the shift: each example's first token never carries loss.
        return sum(int(np.count_nonzero(e.labels[1:] != IGNORE_INDEX)) for e in items)

    def step(self, model: Any, items: list[TokenizedExample], config: SFTConfig, normaliser: int) -> StepOutcome:
        passes = microbatches(items, self.pad_id, config) if items else []
        count = max(normaliser, 1)
        device = next(model.parameters()).device  # sums stay where the losses are: no sync per pass
        step_loss = torch.zeros((), device=device)
        step_correct = torch.zeros((), device=device)
        for batch in passes:
            # Each pass adds its share of the step's mean loss: the gradient equals one pass over all.
            loss_sum, correct = loss_sums(model, batch)
            (loss_sum / count).backward()
            step_loss += loss_sum.detach()
            step_correct += correct
        return StepOutcome(
            loss=float(step_loss) / count,
            metrics={"train_mean_token_accuracy": float(step_correct) / count},
            trained_tokens=sum(labelled(batch) for batch in passes),
            processed_tokens=sum(int(batch["input_ids"].numel()) for batch in passes),
        )

    def evaluate(self, model: Any, items: list[TokenizedExample]) -> dict[str, float]:
        scores = evaluate(model, items, self.pad_id)
        return {"valid_loss": scores["loss"], "valid_mean_token_accuracy": scores["accuracy"]}


def train(
    model: Any,
    config: SFTConfig,
    examples: list[TokenizedExample],
    callbacks: TrainingCallbacks,
    *,
    pad_id: int,
    validation: list[TokenizedExample] | None = None,
    resume_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Supervised fine-tuning of the LoRA weights of `model` (see `trainer.loop.run`)."""
    return run(model, config, examples, callbacks, SFTObjective(pad_id), validation=validation,
               resume_state=resume_state)  # fmt: skip
