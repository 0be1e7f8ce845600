"""Supervised LoRA fine-tuning: synchronous torch code, testable on a tiny model.

The async worker (`trainer.tasks`) only orchestrates: it calls `train()` in a thread and hears
back through a `TrainingCallbacks` object (metrics, checkpoints, whether to stop).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from trainer.data import IGNORE_INDEX, TokenizedExample

StopRequest = Literal["cancel", "pause"] | None


@dataclass
class LoraSettings:
    """LoRA defaults an operator can override per base model in the catalogue.

    Example:
        >>> LoraSettings(r=16, alpha=32).target_modules
        ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class SFTConfig:
    """One training run.

    Example:
        >>> SFTConfig(n_epochs=3, batch_size=2, learning_rate=1e-3, seed=7).warmup_steps(100)
        3
    """

    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    lora: LoraSettings = field(default_factory=LoraSettings)
    log_every_steps: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

    def warmup_steps(self, total_steps: int) -> int:
        return max(0, math.ceil(total_steps * self.warmup_ratio))


class TrainingCallbacks(Protocol):
    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, step: int, total_steps: int, save: Any, metrics: dict[str, float]) -> None: ...
    def should_stop(self, step: int) -> StopRequest: ...
    def on_stop(self, request: StopRequest, step: int, save_state: Any) -> None: ...


@dataclass
class TrainResult:
    steps: int
    trained_tokens: int
    final_train_loss: float
    stopped: StopRequest = None


def _batches(examples: list[TokenizedExample], batch_size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _collate(examples: list[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def loss_and_accuracy(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean token loss over labelled positions, token accuracy, and the count of labelled tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    shifted = logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    valid = targets != IGNORE_INDEX
    count = int(valid.sum())
    loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    ) / max(count, 1)
    accuracy = ((shifted.argmax(-1) == targets) & valid).sum() / max(count, 1)
    return loss, accuracy, count


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


def load_lora_model(base_path: Path, lora: LoraSettings, *, seed: int) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config)


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
    """Train the LoRA weights of `model` in place. Deterministic for a given `config.seed`.

    `resume_state` (from `save_state` at a pause) restores optimizer, scheduler and position, so
    a resumed run continues from the step it stopped at.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.n_epochs
    warmup = config.warmup_steps(total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step = 0
    trained_tokens = 0
    last_loss = float("nan")
    if resume_state:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        step = resume_state["step"]
        trained_tokens = resume_state["trained_tokens"]

    def save_state() -> dict[str, Any]:
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "trained_tokens": trained_tokens,
        }

    last_accuracy = float("nan")
    model.train()
    for epoch in range(config.n_epochs):
        if (epoch + 1) * steps_per_epoch <= step:
            continue  # a whole epoch trained before a pause
        # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
        batches = _batches(examples, config.batch_size, random.Random(config.seed * 1000 + epoch))
        for index, batch_ids in enumerate(batches):
            if epoch * steps_per_epoch + index < step:
                continue  # already trained before a pause
            request = callbacks.should_stop(step)
            if request:
                callbacks.on_stop(request, step, save_state)
                return TrainResult(step, trained_tokens, last_loss, stopped=request)
            batch = _collate([examples[i] for i in batch_ids], pad_id)
            loss, accuracy, count = loss_and_accuracy(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_tokens += count
            last_loss = float(loss.detach())
            last_accuracy = float(accuracy)
            if step % config.log_every_steps == 0 or step == total_steps:
                metrics = {"train_loss": last_loss, "train_mean_token_accuracy": last_accuracy}
                if validation and (step % steps_per_epoch == 0 or step == total_steps):
                    scores = evaluate(model, validation, pad_id)
                    metrics |= {"valid_loss": scores["loss"], "valid_mean_token_accuracy": scores["accuracy"]}
                callbacks.on_metrics(step, total_steps, metrics)
        callbacks.on_epoch_end(
            epoch + 1,
            step,
            total_steps,
            save_state,
            {"train_loss": last_loss, "train_mean_token_accuracy": float(accuracy)},
        )
    return TrainResult(step, trained_tokens, last_loss)
