"""One in-process trial of supervised hyperparameters on a benchmark task, scored on its held-out file.

    .venv/bin/python tests/benchmarks/trial_sft_hyperparameters.py extract --lr 6e-4 [--epochs 3] [--batch 1]
        [--r 8] [--alpha 16] [--dropout 0] [--seed 0] [--threads 2] [--model DIR]

For choosing `"auto"` values quickly, without the service: trains SmolLM2-135M-Instruct (converted
once into `.cache/bench/smollm2-135m`, as `bench_trainer_pretrained.py` does) with the trainer's
own code (`trainer.sft.train`, the task's 80 training lines tokenised by `trainer.data`), then
answers the task's 60 held-out inputs greedily with transformers + peft, with the task's system
prompt, and prints one JSON line (the settings, the exact-match score, the mean loss of the last 20
steps, the training time) and each miss. Extraction compares the parsed JSON, like the benchmark's
python grader. The benchmark (`bench_pretrained_tasks.py`) is the measure that counts: it goes
through the service, the Evals API and vLLM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_trainer_pretrained import ensure_model  # noqa: E402
from trainer.data import tokenize_chat  # noqa: E402
from trainer.sft import LoraSettings, SFTConfig, load_lora_model, train  # noqa: E402

TASKS = ROOT / "tests" / "benchmarks" / "tasks"


class Losses:
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.values.append(metrics["train_loss"])

    def on_epoch_end(self, *args: object) -> None: ...
    def should_stop(self, step: int) -> None: ...
    def on_stop(self, *args: object) -> None: ...


def correct(task: str, answer: str, expected: str) -> bool:
    if task != "extract":
        return answer.strip() == expected
    try:
        return bool(json.loads(answer.strip()) == json.loads(expected))
    except ValueError:
        return False


def answers(model: Any, tokenizer: Any, system: str, inputs: list[str], batch: int = 12) -> list[str]:
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": text}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for text in inputs
    ]
    out: list[str] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            encoded = tokenizer(
                prompts[start : start + batch], return_tensors="pt", padding=True, add_special_tokens=False
            )
            generated = model.generate(
                **encoded, max_new_tokens=64, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            out += tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=sorted(p.name for p in TASKS.iterdir() if p.is_dir()))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="a converted model directory")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    path = args.model or ensure_model()
    folder = TASKS / args.task
    system = json.loads((folder / "task.json").read_text())["system"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    lines = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines() if line.strip()]
    held_out = [json.loads(line)["item"] for line in (folder / "heldout.jsonl").read_text().splitlines() if line]
    examples = [tokenize_chat(tokenizer, line, max_tokens=4096) for line in lines]
    lora = LoraSettings(r=args.r, alpha=args.alpha, dropout=args.dropout)
    model = load_lora_model(path, lora, seed=args.seed, device=torch.device("cpu"))
    config = SFTConfig(n_epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr, seed=args.seed, lora=lora)
    losses = Losses()
    started = time.monotonic()
    train(model, config, examples, losses, pad_id=tokenizer.pad_token_id or 0)
    train_s = time.monotonic() - started
    replies = answers(model, tokenizer, system, [item["input"] for item in held_out])
    hits = [correct(args.task, reply, item["expected"]) for reply, item in zip(replies, held_out, strict=True)]
    last = losses.values[-20:]
    settings = {k: getattr(args, k) for k in ("task", "lr", "epochs", "batch", "r", "alpha", "dropout", "seed")}
    result = {
        "score": round(sum(hits) / len(hits), 3),
        "loss20": round(sum(last) / len(last), 4),
        "train_s": round(train_s),
    }
    print(json.dumps({**settings, **result}))
    for hit, reply, item in zip(hits, replies, held_out, strict=True):
        if not hit:
            print(f"  miss: {reply.strip()[:120]!r}, wanted {item['expected'][:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
