"""Checking a grader definition before it runs: OpenAI's fields, per type; mistakes are 400s."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.graders import embeddings, model, sandbox, similarity
from service.graders.errors import GraderConfigError
from service.graders.template import check_template
from service.settings import Settings

TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
RUNNABLE = ("string_check", "text_similarity", "python", "score_model", "multi")
"""What `/fine_tuning/alpha/graders/run` and `/validate` take (`label_model` is for evals and `multi`)."""
OPERATIONS = ("eq", "ne", "like", "ilike")
FORMULA_FUNCTIONS = ("min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log", "round")


@dataclass
class GradingOptions:
    """Where graders find their data and how far python graders may go."""

    sampler: model.Sampler | None = None
    """Samples `score_model` / `label_model` graders; None: model graders are refused."""
    wordnet_dir: Path = Path("/usr/share/wordnet")
    """WordNet 3.0 dict files (Debian's `wordnet-base`), for `meteor`."""
    cache_dir: Path = field(default_factory=lambda: Path("~/.ftserve/graders").expanduser())
    """Where the WordNet copy nltk reads lives."""
    python_enabled: bool = True
    limits: sandbox.SandboxLimits = field(default_factory=sandbox.SandboxLimits)
    embedder: embeddings.Embedder | None = None
    """Embeds texts for the `cosine` metric; None: `cosine` is refused."""

    @classmethod
    def from_settings(cls, settings: Settings, sampler: model.Sampler | None) -> GradingOptions:
        limits = sandbox.SandboxLimits(timeout_s=settings.python_grader_timeout_s,
                                       memory_mb=settings.python_grader_memory_mb)  # fmt: skip
        return cls(
            sampler=sampler,
            wordnet_dir=settings.wordnet_dir,
            cache_dir=settings.resolved_data_dir() / "graders",
            python_enabled=settings.python_grader.lower() not in ("off", "0", "false", "no"),
            limits=limits,
            # The sampler's HTTP client, where it has one, is shared rather than opened per call.
            embedder=embeddings.catalog_embedder(settings, getattr(sampler, "http", None)),
        )


def _string(grader: dict[str, Any], name: str, param: str) -> str:
    value = grader.get(name)
    if not isinstance(value, str):
        raise GraderConfigError(f"Missing or invalid `{name}`: a string is required.", param=f"{param}.{name}")
    return value


async def check_grader(
    grader: Any, options: GradingOptions, *, allowed: tuple[str, ...] = TYPES, param: str = "grader"
) -> dict[str, Any]:
    """The grader as given, once every field it needs is present and valid (else a 400)."""
    if not isinstance(grader, dict):
        raise GraderConfigError(f"`{param}` must be an object.", param=param)
    kind = grader.get("type")
    if kind not in allowed:
        raise GraderConfigError(
            f"Invalid grader type {kind!r}; expected one of {', '.join(allowed)}.", param=f"{param}.type"
        )
    _string(grader, "name", param)
    if kind in ("string_check", "text_similarity"):
        for name in ("input", "reference"):
            check_template(_string(grader, name, param), f"{param}.{name}")
    if kind == "string_check" and grader.get("operation") not in OPERATIONS:
        raise GraderConfigError(
            f"Invalid `operation` {grader.get('operation')!r}; expected one of {', '.join(OPERATIONS)}.",
            param=f"{param}.operation",
        )
    if kind == "text_similarity":
        similarity.check_metric(grader.get("evaluation_metric"), options.wordnet_dir, options.cache_dir,
                                options.embedder)  # fmt: skip
    if kind == "python":
        source = _string(grader, "source", param)
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            raise GraderConfigError(f"`source` does not parse: {error}", param=f"{param}.source") from None
        if not any(isinstance(n, ast.FunctionDef) and n.name == "grade" for n in tree.body):
            raise GraderConfigError("`source` must define `grade(sample, item)`.", param=f"{param}.source")
        sandbox.check_available(options.limits, options.python_enabled)
    if kind in ("score_model", "label_model"):
        await _check_model_grader(grader, options, param)
    if kind == "multi":
        await _check_multi(grader, options, param)
    return grader


async def _check_model_grader(grader: dict[str, Any], options: GradingOptions, param: str) -> None:
    model.check_messages(grader.get("input"), f"{param}.input")
    if grader["type"] == "score_model":
        low, high = score_range(grader)
        if not low < high:
            raise GraderConfigError("`range` must be two numbers, low then high.", param=f"{param}.range")
    else:
        labels, passing = grader.get("labels"), grader.get("passing_labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise GraderConfigError("`labels` must be a non-empty list of strings.", param=f"{param}.labels")
        if not isinstance(passing, list) or not passing or not set(passing) <= set(labels):
            raise GraderConfigError("`passing_labels` must be a non-empty subset of `labels`.",
                                    param=f"{param}.passing_labels")  # fmt: skip
    if options.sampler is None:
        raise GraderConfigError("Model graders cannot run here.", param=f"{param}.model")
    await options.sampler.check_model(_string(grader, "model", param))


def score_range(grader: dict[str, Any]) -> tuple[float, float]:
    value = grader.get("range") or [0, 1]
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(x, int | float) for x in value):
        raise GraderConfigError("`range` must be two numbers, low then high.", param="grader.range")
    return float(value[0]), float(value[1])


def sub_graders(grader: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A multi grader's graders by name: a name→grader map, or one grader named by its `name`."""
    graders = grader.get("graders")
    if isinstance(graders, dict) and "type" in graders:
        return {str(graders.get("name")): graders}
    if isinstance(graders, dict) and graders:
        return graders
    raise GraderConfigError("`graders` must be a grader or a map of names to graders.", param="grader.graders")


async def _check_multi(grader: dict[str, Any], options: GradingOptions, param: str) -> None:
    graders = sub_graders(grader)
    for name, sub in graders.items():
        allowed = tuple(t for t in TYPES if t != "multi")
        await check_grader(sub, options, allowed=allowed, param=f"{param}.graders.{name}")
    formula = _string(grader, "calculate_output", param)
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError:
        raise GraderConfigError(f"`calculate_output` does not parse: {formula!r}",
                                param=f"{param}.calculate_output") from None  # fmt: skip
    known = set(graders) | set(FORMULA_FUNCTIONS)
    unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - known)
    if unknown:
        raise GraderConfigError(
            f"`calculate_output` names {', '.join(unknown)}, which is not one of the graders "
            f"({', '.join(graders)}) or functions ({', '.join(FORMULA_FUNCTIONS)}).",
            param=f"{param}.calculate_output",
        )
