"""How a job's `"auto"` hyperparameters resolve, per base model.

The catalogue entry of the job's base model may say how `"auto"` resolves for it
(`service.catalog.BaseModel.auto`); entries that say nothing get OpenAI's rule below.
"""

from __future__ import annotations

import math
from typing import Any

from service.catalog import BaseModel, TrainingDefaults

HYPERPARAMETER_NAMES = ("n_epochs", "batch_size", "learning_rate_multiplier")
DPO_DEFAULT_BETA = 0.1
RFT_NAMES = ("compute_multiplier", "eval_interval", "eval_samples", "reasoning_effort")
"""A reinforcement job's hyperparameters besides the common three (OpenAI's names)."""
RFT_DEFAULTS = {"compute_multiplier": 1.0, "eval_samples": 4, "reasoning_effort": "default"}
"""`"auto"` for a reinforcement job: group size 8 (`trainer.rft.group_size`), 4 samples of each
validation prompt per evaluation; `eval_interval` is one epoch's steps."""


def resolve_hyperparameters(
    requested: dict[str, Any], n_examples: int, base: BaseModel | None = None
) -> dict[str, Any]:
    """Replace each `"auto"` with a number chosen from the data set's size and the base model.

    OpenAI's rules (documented in the README), for what the catalogue entry leaves unsaid:
    - `n_epochs`: aim for 3 passes, but see every example ~100 times in all on small sets and
      at most ~25,000 example-passes on large ones: `3`, raised to `min(25, 100 // n)` when
      `3n < 100`, lowered to `max(1, 25000 // n)` when `3n > 25000`.
    - `batch_size`: about 0.2% of the examples, between 1 and 256.
    - `learning_rate_multiplier`: 1.0, the catalogue's learning rate for the base model as is.

    The entry's `auto` (`service.catalog.TrainingDefaults`) replaces any of them; its
    `min_batch_size` raises the rule's batch (never past the number of examples), and its
    `min_steps` then raises `"auto"` epochs until the job makes that many optimizer steps.

    Example:
        >>> resolve_hyperparameters({"n_epochs": "auto", "batch_size": 4}, 20)
        {'n_epochs': 5, 'batch_size': 4, 'learning_rate_multiplier': 1.0}
        >>> from service.catalog import TrainingDefaults
        >>> tuned = BaseModel(name="m", source="m", auto=TrainingDefaults(n_epochs=25, min_steps=300))
        >>> resolve_hyperparameters({}, 10, tuned)
        {'n_epochs': 30, 'batch_size': 1, 'learning_rate_multiplier': 1.0}
        >>> resolve_hyperparameters({"compute_multiplier": "auto", "batch_size": 4}, 20, tuned)["eval_interval"]
        5
        >>> pretrained = BaseModel(name="p", source="p", auto=TrainingDefaults(min_batch_size=4))
        >>> resolve_hyperparameters({}, 80, pretrained), resolve_hyperparameters({}, 3000, pretrained)["batch_size"]
        ({'n_epochs': 3, 'batch_size': 4, 'learning_rate_multiplier': 1.0}, 6)
    """
    defaults = (base.auto if base else None) or TrainingDefaults()
    reinforcement = "compute_multiplier" in requested
    if reinforcement:
        # A catalogue's epochs and minimum steps are tuned for learning answers by heart (SFT);
        # a reinforcement job samples and grades at every step, so it keeps OpenAI's rule for them.
        defaults = TrainingDefaults(learning_rate_multiplier=defaults.learning_rate_multiplier)
    resolved = dict(requested)
    if resolved.get("batch_size", "auto") == "auto":
        rule = max(defaults.min_batch_size or 1, min(256, round(n_examples * 0.002)))
        resolved["batch_size"] = defaults.batch_size or min(rule, max(n_examples, 1))
    if resolved.get("n_epochs", "auto") == "auto":
        resolved["n_epochs"] = _epochs(n_examples, int(resolved["batch_size"]), defaults)
    if resolved.get("learning_rate_multiplier", "auto") == "auto":
        resolved["learning_rate_multiplier"] = defaults.learning_rate_multiplier or 1.0
    if "beta" in resolved and resolved["beta"] == "auto":
        resolved["beta"] = DPO_DEFAULT_BETA
    if reinforcement:
        for name, value in RFT_DEFAULTS.items():
            if resolved.get(name, "auto") == "auto":
                resolved[name] = value
        if resolved.get("eval_interval", "auto") == "auto":
            resolved["eval_interval"] = max(1, math.ceil(n_examples / max(int(resolved["batch_size"]), 1)))
        return {k: resolved[k] for k in (*HYPERPARAMETER_NAMES, *RFT_NAMES)}
    return {k: resolved[k] for k in (*HYPERPARAMETER_NAMES, *(["beta"] if "beta" in resolved else []))}


def _epochs(n_examples: int, batch_size: int, defaults: TrainingDefaults) -> int:
    if defaults.n_epochs is not None:
        epochs = defaults.n_epochs
    else:
        epochs = 3
        if n_examples * epochs < 100:
            epochs = min(25, 100 // max(n_examples, 1))
        elif n_examples * epochs > 25_000:
            epochs = max(1, 25_000 // n_examples)
    if defaults.min_steps:
        steps_per_epoch = max(1, math.ceil(n_examples / max(batch_size, 1)))
        epochs = max(epochs, math.ceil(defaults.min_steps / steps_per_epoch))
    return epochs
