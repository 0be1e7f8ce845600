"""Reinforcement fine-tuning benchmark: GRPO steps on tiny-chat, with a `string_check` and a `python` grader.

    .venv/bin/python tests/benchmarks/bench_rft.py [--prompts 40] [--group 8] [--max-tokens 32]

One process, the real trainer loop (`trainer.loop.run`) with the RFT objective, the in-process
sampler and the shared graders (python ones in their sandbox, `FTSERVE_RFT_GRADER_CONCURRENCY`
at once). Printed for each grader: samples per second, trained (completion) tokens per second,
and the shares of the wall time spent sampling and grading (the rest: the policy-gradient
passes, with the reference's forward). The baseline, measured in the same run, is an SFT epoch
over sequences of the same shape (each prompt with an answer as long as the mean sample, as
many as the RFT run trained on): the ratio says what an RFT token costs against an SFT one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from service.settings import Settings  # noqa: E402
from tests import rft_task  # noqa: E402
from trainer.data import tokenize_chat  # noqa: E402
from trainer.loop import run  # noqa: E402
from trainer.rft import RFTObjective, tokenize_prompt  # noqa: E402
from trainer.rft_grading import GraderPool  # noqa: E402
from trainer.sampling import LocalSampler  # noqa: E402
from trainer.sft import LoraSettings, SFTConfig, load_lora_model, train  # noqa: E402
from trainer.tiny_model import ensure_tiny_chat  # noqa: E402

GRADERS = {
    "string_check": {"type": "string_check", "name": "blue", "input": "{{sample.output_text}}",
                     "reference": "{{item.answer}}", "operation": "like"},
    "python": {"type": "python", "name": "blue",
               "source": "def grade(sample, item):\n    return float(item['answer'] in sample['output_text'])\n"},
}  # fmt: skip


class Quiet:
    def on_metrics(self, *args: object) -> None: ...
    def on_epoch_end(self, *args: object) -> None: ...
    def should_stop(self, step: int) -> None: ...
    def on_stop(self, *args: object) -> None: ...


def rft(base: Path, tokenizer: Any, grader: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    lines = rft_task.rft_lines(list(rft_task.NOUNS[: args.prompts]), "e")
    prompts = [tokenize_prompt(tokenizer, line, i, max_tokens=256) for i, line in enumerate(lines)]
    model = load_lora_model(base, LoraSettings(), seed=0, device=torch.device("cpu"))
    settings = Settings()
    pool = GraderPool(grader, settings, None, settings.rft_grader_concurrency)
    objective = RFTObjective(LocalSampler(tokenizer), pool.grade_groups, seed=0, group=args.group,
                             max_new_tokens=args.max_tokens, eval_interval=0, eval_samples=0)  # fmt: skip
    config = SFTConfig(n_epochs=1, batch_size=args.batch_size, learning_rate=1e-3, seed=0)
    try:
        started = time.perf_counter()
        result = run(model, config, prompts, Quiet(), objective)  # type: ignore[arg-type]
        wall = time.perf_counter() - started
    finally:
        pool.close()
    return {"wall": wall, "samples": objective.samples, "tokens": result.trained_tokens,
            "sampling": objective.sampling_seconds, "grading": objective.grading_seconds}  # fmt: skip


def sft_baseline(base: Path, tokenizer: Any, sequences: int, answer_tokens: int, args: argparse.Namespace) -> float:
    """Trained tokens per second of SFT on `sequences` prompts answered with `answer_tokens` tokens."""
    nouns = [rft_task.NOUNS[i % args.prompts] for i in range(sequences)]
    examples = []
    for noun in nouns:
        line = {"messages": [*rft_task.messages(noun), {"role": "assistant", "content": "blue " * answer_tokens}]}
        example = tokenize_chat(tokenizer, line, max_tokens=256)
        keep = int((example.labels >= 0).nonzero()[0][0]) + answer_tokens  # the answer cut to the sample length
        examples.append(type(example)(example.input_ids[:keep], example.labels[:keep]))
    model = load_lora_model(base, LoraSettings(), seed=0, device=torch.device("cpu"))
    config = SFTConfig(n_epochs=1, batch_size=args.batch_size * args.group, learning_rate=1e-3, seed=0)
    started = time.perf_counter()
    result = train(model, config, examples, Quiet(), pad_id=tokenizer.pad_token_id)
    return result.trained_tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from transformers import AutoTokenizer

    base = ensure_tiny_chat(Path(Settings().resolved_data_dir()) / "models")
    tokenizer = AutoTokenizer.from_pretrained(base)
    print(f"tiny-chat, {args.prompts} prompts, {args.batch_size} a step, groups of {args.group}, "
          f"at most {args.max_tokens} sampled tokens, {torch.get_num_threads()} CPU threads")  # fmt: skip
    # A warm-up step first: torch's first passes (allocations, kernels chosen) are not the steady state.
    rft(base, tokenizer, GRADERS["string_check"], argparse.Namespace(**{**vars(args), "prompts": args.batch_size}))
    results = {name: rft(base, tokenizer, grader, args) for name, grader in GRADERS.items()}
    first = results["string_check"]
    baseline = sft_baseline(base, tokenizer, first["samples"], max(1, round(first["tokens"] / first["samples"])), args)
    print(f"{'grader':<13} {'samples/s':>10} {'tokens/s':>10} {'sampling':>9} {'grading':>8} {'wall s':>7}")
    for name, r in results.items():
        print(f"{name:<13} {r['samples'] / r['wall']:>10.1f} {r['tokens'] / r['wall']:>10.1f} "
              f"{r['sampling'] / r['wall']:>9.0%} {r['grading'] / r['wall']:>8.0%} {r['wall']:>7.1f}")  # fmt: skip
    print(f"SFT baseline on sequences of the same shape: {baseline:.1f} trained tokens/s")
    for name, r in results.items():
        print(f"ratio RFT/SFT trained tokens/s ({name}): {r['tokens'] / r['wall'] / baseline:.3f}")


if __name__ == "__main__":
    main()
