"""What a job leaves in object storage (written with `service.storage.upload_tree`).

    jobs/{org}/{job}/adapter/                     the final PEFT adapter (what `ft:…` serves)
        adapter_config.json, adapter_model.safetensors, ftserve.json (base + tokenizer fingerprint)
    jobs/{org}/{job}/checkpoints/step-{N}/adapter/  an epoch's adapter (what `ft:…:ckpt-step-N` serves)
    jobs/{org}/{job}/checkpoints/step-{N}/state.pt  optimizer, scheduler, step: what a resume needs
    jobs/{org}/{job}/pauses/step-{N}/…             the same pair, saved by a pause or a shutdown

A directory is uploaded file by file with `ftserve.json` (or `state.pt`) last, so a reader that
finds the marker finds the whole directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.adapters import ADAPTER_MARKER


def write_marker(adapter_dir: Path, info: dict[str, Any]) -> None:
    (adapter_dir / ADAPTER_MARKER).write_text(json.dumps(info, indent=2, sort_keys=True))


RFT_COLUMNS = ["train_reward_mean", "train_reward_std", "valid_reward_mean", "kl", "sample_tokens_mean"]
"""A reinforcement job's further columns (then one `train_reward_<name>` per sub-grader of a `multi`)."""


def results_csv(rows: list[dict[str, Any]]) -> str:
    """OpenAI's result file: `step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy`;
    a reinforcement job's rows add `RFT_COLUMNS` and its sub-graders' rewards.

    Example:
        >>> results_csv([{"step": 1, "train_loss": 1.5, "train_mean_token_accuracy": 0.25}])
        'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\\n1,1.50000,0.25000,,\\n'
        >>> results_csv([{"step": 1, "train_loss": 0.1, "train_reward_mean": 0.5, "kl": 0.01}]).splitlines()[1]
        '1,0.10000,,,,0.50000,,,0.01000,'
    """

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.5f}"

    extra: list[str] = []
    if any("train_reward_mean" in row for row in rows):
        subs = sorted({k for row in rows for k in row if k.startswith("train_reward_") and k not in RFT_COLUMNS})
        extra = RFT_COLUMNS + subs
    lines = [",".join(["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy", *extra])]
    for row in rows:
        lines.append(
            ",".join([
                str(row["step"]),
                cell(row.get("train_loss")),
                cell(row.get("train_mean_token_accuracy", row.get("train_preference_accuracy"))),
                cell(row.get("valid_loss")),
                cell(row.get("valid_mean_token_accuracy")),
                *(cell(row.get(name)) for name in extra),
            ])
        )  # fmt: skip
    return "\n".join(lines) + "\n"
