"""How a job's `"auto"` hyperparameters resolve, per base model.

The catalogue entry of the job's base model may say how `"auto"` resolves for it
(`service.catalog.BaseModel.auto`); entries that say nothing get OpenAI's rule below.
"""

from __future__ import annotations

from typing import Any

from service.catalog import BaseModel

HYPERPARAMETER_NAMES = ("n_epochs", "batch_size", "learning_rate_multiplier")
DPO_DEFAULT_BETA = 0.1


def resolve_hyperparameters(
    requested: dict[str, Any], n_examples: int, base: BaseModel | None = None
) -> dict[str, Any]:
    """Replace each `"auto"` with a number chosen from the data set's size.

    The rules (documented in the README):
    - `n_epochs`: aim for 3 passes, but see every example ~100 times in all on small sets and
      at most ~25,000 example-passes on large ones: `3`, raised to `min(25, 100 // n)` when
      `3n < 100`, lowered to `max(1, 25000 // n)` when `3n > 25000`.
    - `batch_size`: about 0.2% of the examples, between 1 and 256.
    - `learning_rate_multiplier`: 1.0, the catalogue's learning rate for the base model as is.

    Example:
        >>> resolve_hyperparameters({"n_epochs": "auto", "batch_size": 4}, 20)
        {'n_epochs': 5, 'batch_size': 4, 'learning_rate_multiplier': 1.0}
    """
    resolved = dict(requested)
    if resolved.get("n_epochs", "auto") == "auto":
        epochs = 3
        if n_examples * epochs < 100:
            epochs = min(25, 100 // max(n_examples, 1))
        elif n_examples * epochs > 25_000:
            epochs = max(1, 25_000 // n_examples)
        resolved["n_epochs"] = epochs
    if resolved.get("batch_size", "auto") == "auto":
        resolved["batch_size"] = max(1, min(256, round(n_examples * 0.002)))
    if resolved.get("learning_rate_multiplier", "auto") == "auto":
        resolved["learning_rate_multiplier"] = 1.0
    if "beta" in resolved and resolved["beta"] == "auto":
        resolved["beta"] = DPO_DEFAULT_BETA
    return {k: resolved[k] for k in (*HYPERPARAMETER_NAMES, *(["beta"] if "beta" in resolved else []))}
