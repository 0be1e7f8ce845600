"""Run by tests/test_ddp.py: a few SFT steps on tiny-chat, on one process or as a torchrun rank.

python tests/ddp_script.py MODEL_DIR OUT.pt                      (one process)
python -m torch.distributed.run --nproc-per-node 2 tests/ddp_script.py MODEL_DIR OUT.pt
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import QA, MetricsRecorder
from trainer.data import tokenize_chat
from trainer.loop import run
from trainer.sft import LoraSettings, SFTConfig, SFTObjective, load_lora_model


def main() -> None:
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    if "RANK" in os.environ:
        torch.distributed.init_process_group("gloo")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = [
        tokenize_chat(tokenizer, {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                      max_tokens=256)
        for q, a in QA
    ]  # fmt: skip
    model = load_lora_model(model_dir, LoraSettings(), seed=0)
    config = SFTConfig(n_epochs=2, batch_size=6, learning_rate=5e-3, seed=0)  # 6 does not split evenly: uneven shards
    result = run(model, config, examples, MetricsRecorder(), SFTObjective(tokenizer.pad_token_id))
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        weights = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}
        torch.save({"weights": weights, "steps": result.steps, "tokens": result.trained_tokens,
                    "loss": result.final_train_loss}, out)  # fmt: skip
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
