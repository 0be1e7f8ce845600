"""Grading one sample: the reward, and OpenAI's `metadata` of how it was reached."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from service.graders import embeddings, model, sandbox, similarity
from service.graders.errors import GraderErrors, SampleFailure
from service.graders.spec import FORMULA_FUNCTIONS, GradingOptions, score_range, sub_graders
from service.graders.template import render

_FUNCTIONS = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "exp": math.exp,
              "sqrt": math.sqrt, "log": math.log, "round": round}  # fmt: skip
assert set(_FUNCTIONS) == set(FORMULA_FUNCTIONS)


@dataclass
class GradeResult:
    reward: float
    name: str
    type: str
    errors: GraderErrors = field(default_factory=GraderErrors)
    execution_time: float = 0.0
    scores: dict[str, Any] = field(default_factory=dict)
    sub_rewards: dict[str, Any] = field(default_factory=dict)
    usage_per_model: dict[str, model.Usage] = field(default_factory=dict)
    sampled_model_name: str | None = None
    label: str | None = None
    """`label_model`: the label the model chose."""

    @property
    def token_usage(self) -> int | None:
        return sum(u.total_tokens for u in self.usage_per_model.values()) if self.usage_per_model else None

    def response(self) -> dict[str, Any]:
        """The body of `/fine_tuning/alpha/graders/run`."""
        return {
            "reward": self.reward,
            "metadata": {
                "name": self.name,
                "type": self.type,
                "errors": self.errors.as_dict(),
                "execution_time": self.execution_time,
                "scores": self.scores,
                "token_usage": self.token_usage,
                "sampled_model_name": self.sampled_model_name,
            },
            "sub_rewards": self.sub_rewards,
            "model_grader_token_usage_per_model": {m: vars(u) for m, u in self.usage_per_model.items()},
        }


async def grade(grader: dict[str, Any], sample: dict[str, Any], item: Any, options: GradingOptions) -> GradeResult:
    """Grade one sample with an already checked grader; its failures are flags, never exceptions."""
    started = time.perf_counter()
    result = GradeResult(reward=0.0, name=grader["name"], type=grader["type"])
    context = {"sample": sample, "item": item}
    try:
        await _grade(grader, context, options, result)
    except SampleFailure as failure:
        failure.record(result.errors)
        usage = getattr(failure, "usage", None)
        if usage is not None:
            result.usage_per_model.setdefault(grader["model"], model.Usage()).add(usage)
        result.reward = 0.0
    result.execution_time = time.perf_counter() - started
    if grader["type"] != "multi":
        result.scores = {grader["name"]: result.reward}
    return result


async def _grade(grader: dict[str, Any], context: dict[str, Any], options: GradingOptions, result: GradeResult) -> None:
    kind = grader["type"]
    if kind == "string_check":
        text, reference = render(grader["input"], context), render(grader["reference"], context)
        matched = {"eq": text == reference, "ne": text != reference, "like": reference in text,
                   "ilike": reference.lower() in text.lower()}[grader["operation"]]  # fmt: skip
        result.reward = 1.0 if matched else 0.0
    elif kind == "text_similarity":
        text, reference = render(grader["input"], context), render(grader["reference"], context)
        if grader["evaluation_metric"] == "cosine":
            await _grade_cosine(text, reference, options, result)
        else:
            result.reward = similarity.score(grader["evaluation_metric"], text, reference, options.wordnet_dir,
                                             options.cache_dir)  # fmt: skip
    elif kind == "python":
        result.reward = await sandbox.run_python(grader["source"], context["sample"], context["item"], options.limits)
    elif kind in ("score_model", "label_model"):
        await _grade_model(grader, context, options, result)
    elif kind == "multi":
        await _grade_multi(grader, context, options, result)


async def _grade_cosine(text: str, reference: str, options: GradingOptions, result: GradeResult) -> None:
    embedder = options.embedder
    if embedder is None:  # the grader was checked without one: the same 400 as then
        similarity.check_metric("cosine", options.wordnet_dir, options.cache_dir)
        return
    try:
        result.reward, usage = await embeddings.cosine_similarity(embedder, text, reference)
    except model.SamplerError as error:
        raise SampleFailure("model_grader_server_error", str(error)) from None
    result.usage_per_model.setdefault(embedder.model, model.Usage()).add(usage)


async def _grade_model(grader: dict[str, Any], context: dict[str, Any], options: GradingOptions,
                       result: GradeResult) -> None:  # fmt: skip
    assert options.sampler is not None
    result.sampled_model_name = grader["model"]
    if grader["type"] == "score_model":
        low, high = score_range(grader)
        value, usage = await model.ask(options.sampler, grader, context, model.score_schema(low, high))
        if not isinstance(value, int | float) or not low <= value <= high:
            raise SampleFailure("model_grader_parse_error", f"Score {value!r} is outside [{low:g}, {high:g}].")
        result.reward = float(value)
    else:
        value, usage = await model.ask(options.sampler, grader, context, model.label_schema(grader["labels"]))
        if value not in grader["labels"]:
            raise SampleFailure("model_grader_parse_error", f"Label {value!r} is not one of the labels.")
        result.label = value
        result.reward = 1.0 if value in grader["passing_labels"] else 0.0
    result.usage_per_model.setdefault(grader["model"], model.Usage()).add(usage)


async def _grade_multi(grader: dict[str, Any], context: dict[str, Any], options: GradingOptions,
                       result: GradeResult) -> None:  # fmt: skip
    rewards: dict[str, float] = {}
    for name, sub in sub_graders(grader).items():
        outcome = await grade(sub, context["sample"], context["item"], options)
        rewards[name] = outcome.reward
        result.errors.merge(outcome.errors)
        for model_name, usage in outcome.usage_per_model.items():
            result.usage_per_model.setdefault(model_name, model.Usage()).add(usage)
        result.sampled_model_name = result.sampled_model_name or outcome.sampled_model_name
    result.sub_rewards = dict(rewards)
    result.scores = dict(rewards)
    # simpleeval parses the formula and evaluates only arithmetic, comparisons and these names.
    evaluator = EvalWithCompoundTypes(names=rewards, functions=_FUNCTIONS)
    try:
        value = evaluator.eval(grader["calculate_output"])
        result.reward = float(value)
    except (InvalidExpression, SyntaxError, TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
        raise SampleFailure("formula_parse_error", str(error)) from None
