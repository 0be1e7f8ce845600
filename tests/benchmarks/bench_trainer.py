"""Trainer benchmark: ftserve's packed LoRA trainer against a plain Hugging Face `Trainer` + peft.

    .venv/bin/python tests/benchmarks/bench_trainer.py [--examples 400] [--epochs 2]

One process, one run, on the same locally built Llama (random weights, tiny-chat's tokenizer),
the same LoRA configuration, the same seeded chat data set (answer lengths drawn from a
lognormal distribution) and the same number of epochs, batch size and learning-rate schedule.
The baseline pads each batch to its longest example (`DataCollatorForSeq2Seq`), as a user's
script would. Printed for each: real (non-padding) tokens/s, padding efficiency, wall time,
and the final training loss (mean token loss over the whole data set after training, computed
the same way for both); then the ratios.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import MetricsRecorder  # noqa: E402
from trainer.data import TokenizedExample, tokenize_chat  # noqa: E402
from trainer.sft import LoraSettings, SFTConfig, evaluate, load_lora_model, train  # noqa: E402
from trainer.throughput import model_flop_utilisation  # noqa: E402
from trainer.tiny_model import ensure_tiny_chat  # noqa: E402

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "model",
    "token",
    "answer",
    "question",
    "river",
    "stone",
    "light",
    "paper",
    "code",
    "item",
    "blue",
    "seven",
]


def build_model(target: Path, tokenizer_dir: Path, *, hidden: int, layers: int, vocab: int | None = None) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab or len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def dataset(tokenizer: Any, n: int, seed: int) -> list[TokenizedExample]:
    """Chat examples whose answer lengths follow a lognormal law (median ~40 words, long tail)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = min(700, max(1, int(math.exp(rng.gauss(3.7, 0.9)))))
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        example = {"messages": [{"role": "user", "content": f"Question {i}: say {words} words."},
                                {"role": "assistant", "content": answer}]}  # fmt: skip
        out.append(tokenize_chat(tokenizer, example, max_tokens=1024))
    return out


def run_ftserve(path: Path, examples: list[TokenizedExample], args: argparse.Namespace, pad_id: int) -> dict:
    model = load_lora_model(path, LoraSettings(), seed=0)
    config = SFTConfig(n_epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=0)
    start = time.perf_counter()
    result = train(model, config, examples, MetricsRecorder(), pad_id=pad_id)
    wall = time.perf_counter() - start
    real = sum(len(e.input_ids) for e in examples) * args.epochs
    return {"wall": wall, "real": real, "slots": result.processed_tokens,
            "loss": evaluate(model, examples, pad_id)["loss"]}  # fmt: skip


def run_hf_trainer(path: Path, tokenizer: Any, examples: list[TokenizedExample], args: argparse.Namespace,
                   pad_id: int) -> dict:  # fmt: skip
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.manual_seed(0)
    lora = LoraSettings()
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                   task_type="CAUSAL_LM"),
    )  # fmt: skip
    padder = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    slots = 0

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        nonlocal slots
        batch = padder(features)
        slots += int(batch["input_ids"].numel())
        return batch

    rows = [{"input_ids": e.input_ids.tolist(), "labels": e.labels.tolist(), "attention_mask": [1] * len(e.input_ids)}
            for e in examples]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0.03, weight_decay=0.0,
            max_grad_norm=1.0, seed=0, report_to=[], save_strategy="no", logging_steps=50,
            remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
            disable_tqdm=True, bf16=torch.cuda.is_available(),  # what a user's GPU script would set
        )  # fmt: skip
        trainer = Trainer(model=model, args=training_args, train_dataset=rows, data_collator=collate)  # type: ignore[arg-type]
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    real = sum(len(e.input_ids) for e in examples) * args.epochs
    return {"wall": wall, "real": real, "slots": slots, "loss": evaluate(model, examples, pad_id)["loss"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=None, help="model vocabulary (default: the tokenizer's)")
    parser.add_argument("--peak-flops", type=float, default=None, help="device peak; prints MFU when given")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
        tokenizer_dir = ensure_tiny_chat(Path(tmp))
        path = build_model(Path(tmp) / "bench-llama", tokenizer_dir, hidden=args.hidden, layers=args.layers,
                           vocab=args.vocab)  # fmt: skip
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
                             .parameters())  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(path)
        examples = dataset(tokenizer, args.examples, seed=1)
        lengths = sorted(len(e.input_ids) for e in examples)
        print(f"model: Llama, hidden {args.hidden}, {args.layers} layers; LoRA r8 on all projections; "
              f"{args.examples} examples (tokens: median {lengths[len(lengths) // 2]}, max {lengths[-1]}); "
              f"{args.epochs} epochs, batch {args.batch_size}, {args.threads} CPU threads")  # fmt: skip
        results = {
            "ftserve (packed)": run_ftserve(path, examples, args, tokenizer.pad_token_id),
            "HF Trainer + peft (padded)": run_hf_trainer(path, tokenizer, examples, args, tokenizer.pad_token_id),
        }
    print(f"{'':28s} {'real tokens/s':>14s} {'padding eff.':>13s} {'wall s':>8s} {'final loss':>11s}"
          + (f" {'MFU':>6s}" if args.peak_flops else ""))  # fmt: skip
    for label, r in results.items():
        # Here MFU is 4N per token the device computed, padding included, the same for both
        # trainers; the trainer's own metric events use the finer count of trainer/throughput.py.
        mfu = model_flop_utilisation(4 * parameters * r["slots"], r["wall"], args.peak_flops) if args.peak_flops else 0
        mfu = f" {mfu:6.1%}" if args.peak_flops else ""
        print(f"{label:28s} {r['real'] / r['wall']:14.0f} {r['real'] / r['slots']:13.3f} {r['wall']:8.1f} "
              f"{r['loss']:11.4f}{mfu}")  # fmt: skip
    print(f"base model parameters: {parameters / 1e6:.1f} M")
    ours, theirs = results.values()
    speedup = (ours["real"] / ours["wall"]) / (theirs["real"] / theirs["wall"])
    loss_gap = abs(ours["loss"] - theirs["loss"]) / theirs["loss"]
    print(f"speed-up: {speedup:.2f}x real tokens/s; final loss differs by {loss_gap * 100:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
