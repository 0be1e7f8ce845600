"""Saved training state loads without running code: it comes from object storage."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from trainer.job import load_training_state


class Planted:
    """What a forged state.pt could carry: unpickling it would create a file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.target,))


def test_a_state_that_would_run_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ran"
    torch.save({"step": 1, "optimizer": Planted(target)}, tmp_path / "state.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_training_state(tmp_path / "state.pt")
    assert not target.exists()


def test_what_a_pause_saves_loads_back(tmp_path: Path) -> None:
    """The state a pause saves (`trainer.loop`'s `save_state` plus the history) round-trips."""
    weight = torch.nn.Parameter(torch.ones(4, 4))
    optimizer = torch.optim.AdamW([weight], lr=1e-3, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    weight.sum().backward()
    optimizer.step()
    scheduler.step()
    history = [{"step": 1, "train_loss": 0.5, "train_mean_token_accuracy": 0.25}]
    saved = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": 1,
             "trained_tokens": 12, "history": history}  # fmt: skip
    torch.save(saved, tmp_path / "state.pt")
    loaded = load_training_state(tmp_path / "state.pt")
    assert loaded["history"] == history and loaded["step"] == 1 and loaded["trained_tokens"] == 12
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    restored = torch.optim.AdamW([torch.nn.Parameter(torch.ones(4, 4))], lr=1e-3)
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.9, 0.95)
    assert loaded["scheduler"]["last_epoch"] == 1
