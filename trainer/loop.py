"""The training loop every method shares: order, steps, schedule, stop requests, exact resume.

A method is an `Objective`: it runs one optimizer step's forward and backward passes over a
batch of items (SFT examples, DPO pairs, RFT prompts) and says what they produced. An objective
may also have `begin_step(step)` (told the step number before each step) and `eval_interval`
(steps between validation scorings, instead of one epoch). The loop owns the rest:
AdamW with warm-up and linear decay, gradient clipping, an order that depends only on
`(seed, epoch)`, callbacks between steps, and `save_state` for a pause that resumes exactly.
"""

from __future__ import annotations

import math
import random
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from trainer.throughput import ModelFlops, model_flop_utilisation

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
    pack: bool = True
    """Padding-free packing: each optimizer step's examples are laid end to end in as few rows as
    fit `max_tokens_per_microbatch`, with `position_ids` restarting at each example and attention
    confined to each example (`trainer.attention`). False: one batch padded to the longest."""
    max_tokens_per_microbatch: int | None = None
    """Tokens one forward pass may hold: the length of a packed row (a longer example gets a row of
    its own). A step's further rows are further passes whose gradients accumulate, so `batch_size`
    still means examples per optimizer step. Unset: 4,096 on the CPU and 16,384 on a GPU."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: about a
    third more compute for far less memory, so longer rows (or larger models) fit a device."""
    peak_flops: float | None = None
    """One device's peak FLOP/s; when known, metric events carry `mfu` (`trainer.throughput`)."""
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
    processed_tokens: int = 0
    """Tokens this run put through the model, padding included (its padding efficiency is
    the real tokens over this)."""


@dataclass
class StepOutcome:
    """What one optimizer step's forward and backward passes produced."""

    loss: float
    metrics: dict[str, float]
    """Named as in the metrics events: `train_mean_token_accuracy`, `train_reward_margin`…"""
    trained_tokens: int
    """Tokens that carried loss."""
    processed_tokens: int
    """Tokens through the model, padding included (none when packed)."""


class Objective(Protocol):
    reference_passes: int
    """Forward passes without gradients per step besides the trained one (DPO's reference: 1)."""

    def normaliser(self, items: list[Any]) -> int:
        """What the step's loss is averaged over (labelled tokens, pairs), for these items."""
        ...

    def step(self, model: Any, items: list[Any], config: SFTConfig, normaliser: int) -> StepOutcome:
        """Forward and backward over `items`, the loss divided by the whole step's `normaliser`:
        with data parallelism the shares of all ranks add up to the single-device step."""
        ...

    def evaluate(self, model: Any, items: list[Any]) -> dict[str, float]: ...


class Ranks:
    """This process's place among the data-parallel ranks (one rank when not distributed).

    Every rank takes every `world`-th example of each step, from the same order; gradients and
    metric shares are summed across ranks, so the update equals one device's on the whole batch.
    Rank 0 alone reports, saves and decides whether to stop; the others follow its decision.
    """

    def __init__(self) -> None:
        dist = torch.distributed
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        # NCCL reduces CUDA tensors only; gloo, CPU ones.
        nccl = self.active and dist.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def shard(self, ids: list[int]) -> list[int]:
        return ids[self.rank :: self.world]

    def totals(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks, in one collective call."""
        if not self.active:
            return list(values)
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def total(self, value: float) -> float:
        return self.totals([value])[0]

    def sum_gradients(self, params: list[torch.Tensor]) -> None:
        """Gradients summed over the ranks: one collective call per dtype, not one per tensor."""
        if not self.active:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
        for grads in by_dtype.values():
            flat = torch.cat([grad.reshape(-1) for grad in grads])
            torch.distributed.all_reduce(flat)
            for grad, part in zip(grads, flat.split([grad.numel() for grad in grads]), strict=True):
                grad.copy_(part.view_as(grad))

    def agree(self, request: Any) -> Any:
        """Rank 0's stop request, on every rank."""
        if not self.active:
            return request
        choices = [None, "cancel", "pause"]
        code = torch.tensor([choices.index(request) if self.rank == 0 else 0], device=self.device)
        torch.distributed.broadcast(code, src=0)
        return choices[int(code.item())]


def _batches(items: Sequence[Any], batch_size: int, rng: random.Random) -> Iterator[array[int]]:
    # An int64 array and batches sliced as they are trained: 8 bytes an example, where a list of
    # lists of ints took about 44 (a file of millions of examples: hundreds of MB). `shuffle`
    # draws the same permutation from an array as from a list.
    order = array("q", range(len(items)))
    rng.shuffle(order)
    return (order[i : i + batch_size] for i in range(0, len(order), batch_size))


def run(
    model: Any,
    config: SFTConfig,
    items: list[Any],
    callbacks: TrainingCallbacks,
    objective: Objective,
    *,
    validation: list[Any] | None = None,
    resume_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the LoRA weights of `model` in place. Deterministic for a given `config.seed`.

    `resume_state` (from `save_state` at a pause) restores optimizer, scheduler and position, so
    a resumed run continues from the step it stopped at.
    """
    ranks = Ranks()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
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

    last_metrics: dict[str, float] = {}
    # Validation scores: each epoch, or every `eval_interval` steps where the objective has one (RFT).
    evaluate_every = getattr(objective, "eval_interval", None) or steps_per_epoch
    counter = ModelFlops.of(model)
    flops = 0  # model FLOPs since the last metrics report, for MFU
    processed = 0  # tokens through the model since the last metrics report, for tokens/s
    processed_total = 0
    since = time.perf_counter()
    model.train()
    for epoch in range(config.n_epochs):
        if (epoch + 1) * steps_per_epoch <= step:
            continue  # a whole epoch trained before a pause
        # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
        batches = _batches(items, config.batch_size, random.Random(config.seed * 1000 + epoch))
        for index, batch_ids in enumerate(batches):
            if epoch * steps_per_epoch + index < step:
                continue  # already trained before a pause
            request = ranks.agree(callbacks.should_stop(step) if ranks.rank == 0 else None)
            if request:
                if ranks.rank == 0:
                    callbacks.on_stop(request, step, save_state)
                return TrainResult(step, trained_tokens, last_loss, stopped=request, processed_tokens=processed_total)
            mine = [items[i] for i in ranks.shard(batch_ids)]
            normaliser = int(ranks.total(objective.normaliser(mine)))
            if hasattr(objective, "begin_step"):  # RFT seeds its sampling by the step
                objective.begin_step(step)
            outcome = objective.step(model, mine, config, normaliser)
            ranks.sum_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_processed, step_trained, last_loss, *shares = ranks.totals(
                [outcome.processed_tokens, outcome.trained_tokens, outcome.loss, *outcome.metrics.values()]
            )
            step_processed, step_trained = int(step_processed), int(step_trained)
            processed += step_processed
            processed_total += step_processed
            trained_tokens += step_trained
            # Logits are computed where labels are, in each forward pass of the step.
            flops += counter.training(step_processed, step_trained)
            flops += objective.reference_passes * counter.forward(step_processed, step_trained)
            last_metrics = {"train_loss": last_loss, **dict(zip(outcome.metrics, shares, strict=True))}
            if ranks.rank != 0:
                continue
            if step % config.log_every_steps == 0 or step == total_steps:
                now = time.perf_counter()
                metrics = {**last_metrics, "tokens_per_second": processed / max(now - since, 1e-9)}
                if config.peak_flops:
                    metrics["mfu"] = model_flop_utilisation(flops, now - since, config.peak_flops, ranks.world)
                if validation and (step % evaluate_every == 0 or step == total_steps):
                    metrics |= objective.evaluate(model, validation)
                callbacks.on_metrics(step, total_steps, metrics)
                # Scoring and reporting are not training: the next interval starts after them.
                processed, flops, since = 0, 0, time.perf_counter()
        if ranks.rank == 0:
            callbacks.on_epoch_end(epoch + 1, step, total_steps, save_state, last_metrics)
    return TrainResult(step, trained_tokens, last_loss, processed_tokens=processed_total)
