"""The graders library: each type and metric, templates, the formula of `multi`, and the python sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from nltk.translate.gleu_score import sentence_gleu
from rapidfuzz import fuzz
from rouge_score import rouge_scorer

from service.graders import (
    GraderConfigError,
    GradingOptions,
    Sampled,
    SamplerError,
    SandboxLimits,
    Usage,
    check_grader,
    grade,
    sample_namespace,
    sandbox,
)


@pytest.fixture
def options(tmp_path: Path) -> GradingOptions:
    return GradingOptions(cache_dir=tmp_path / "graders", limits=SandboxLimits(timeout_s=5, cpu_s=3, memory_mb=256))


def run(grader: dict[str, Any], output: str, item: Any, options: GradingOptions) -> Any:
    async def go() -> Any:
        await check_grader(grader, options)
        return await grade(grader, sample_namespace(output), item, options)

    return asyncio.run(go())


def refused(grader: dict[str, Any], options: GradingOptions) -> GraderConfigError:
    with pytest.raises(GraderConfigError) as caught:
        asyncio.run(check_grader(grader, options))
    return caught.value


def check(op: str, text: str, reference: str) -> dict[str, Any]:
    return {"type": "string_check", "name": "s", "input": text, "reference": reference, "operation": op}


@pytest.mark.parametrize(
    ("op", "output", "reference", "expected"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "Paris", "paris", 0.0),
        ("ne", "Paris", "paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "It is Paris.", "Paris", 1.0),
        ("like", "It is paris.", "Paris", 0.0),
        ("ilike", "It is PARIS.", "Paris", 1.0),
        ("ilike", "It is Rome.", "Paris", 0.0),
    ],
)
def test_string_check_operations(op: str, output: str, reference: str, expected: float, options) -> None:
    result = run(check(op, "{{sample.output_text}}", "{{item.answer}}"), output, {"answer": reference}, options)
    assert result.reward == expected
    assert not result.errors.any()
    assert result.response()["metadata"]["scores"] == {"s": expected}


def test_templates_reach_nested_fields_lists_and_output_json(options) -> None:
    item = {"a": {"b": ["x", {"c": "deep"}]}}
    grader = check("eq", "{{ sample.output_json.answer.value }}", "{{item.a.b.1.c}}")
    assert run(grader, '{"answer": {"value": "deep"}}', item, options).reward == 1.0
    # Not JSON: output_json is empty, so the field is missing for this sample.
    missing = run(grader, "deep", item, options)
    assert missing.reward == 0.0 and missing.errors.invalid_variable_error


def test_template_outside_the_two_namespaces_is_refused(options) -> None:
    error = refused(check("eq", "{{ secrets.key }}", "x"), options)
    assert error.status == 400 and error.param == "grader.input"


def similarity(metric: str) -> dict[str, Any]:
    return {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}",
            "reference": "{{item.ref}}", "evaluation_metric": metric}  # fmt: skip


TEXT, REF = "The cat was sitting on the mat", "the cat sat on the mat"


def test_metrics_match_their_libraries(options) -> None:
    def score(metric: str) -> float:
        return run(similarity(metric), TEXT, {"ref": REF}, options).reward

    assert score("fuzzy_match") == pytest.approx(fuzz.ratio(TEXT, REF) / 100)
    assert score("bleu") == pytest.approx(sacrebleu.sentence_bleu(TEXT, [REF]).score / 100)
    tokens = ["the", "cat", "was", "sitting", "on", "the", "mat"]
    assert score("gleu") == pytest.approx(sentence_gleu([["the", "cat", "sat", "on", "the", "mat"]], tokens))
    for n in range(1, 6):
        expected = rouge_scorer.RougeScorer([f"rouge{n}"]).score(REF, TEXT)[f"rouge{n}"].fmeasure
        assert score(f"rouge_{n}") == pytest.approx(expected)
    assert score("rouge_l") == pytest.approx(rouge_scorer.RougeScorer(["rougeL"]).score(REF, TEXT)["rougeL"].fmeasure)


def test_metrics_hand_worked(options) -> None:
    def score(metric: str, text: str, ref: str) -> float:
        return run(similarity(metric), text, {"ref": ref}, options).reward

    # Indel distance abc→abd is 2 over 6 characters: 1 - 2/6.
    assert score("fuzzy_match", "abc", "abd") == pytest.approx(2 / 3)
    # 'a b c' vs 'a b d': two of three unigrams shared (P = R = 2/3); one of two bigrams.
    assert score("rouge_1", "a b c", "a b d") == pytest.approx(2 / 3)
    assert score("rouge_2", "a b c", "a b d") == pytest.approx(1 / 2)
    assert score("rouge_l", "a b c", "a b d") == pytest.approx(2 / 3)
    # METEOR of an exact 5-token match: F = 1, less the fragmentation penalty 0.5 * (1 chunk / 5)^3.
    assert score("meteor", "the quick brown fox jumps", "the quick brown fox jumps") == pytest.approx(0.996)
    for metric in ("bleu", "gleu", "fuzzy_match", "rouge_3", "rouge_l"):
        assert score(metric, "the quick brown fox jumps", "the quick brown fox jumps") == pytest.approx(1.0, abs=1e-3)
        assert score(metric, "xxxyyy", "aaabbb") == pytest.approx(0.0, abs=1e-3)


def test_meteor_credits_wordnet_synonyms(options) -> None:
    # "sofa" and "couch" share a WordNet synset: METEOR counts the match, ROUGE does not.
    meteor = run(similarity("meteor"), "the cat is on the sofa", {"ref": "the cat is on the couch"}, options)
    rouge = run(similarity("rouge_1"), "the cat is on the sofa", {"ref": "the cat is on the couch"}, options)
    assert meteor.reward > 0.9 > rouge.reward


def test_meteor_without_wordnet_and_cosine_are_400s(options, tmp_path: Path) -> None:
    options.wordnet_dir = tmp_path / "empty"
    error = refused(similarity("meteor"), options)
    assert error.code == "wordnet_missing" and "wordnet-base" in error.message
    error = refused(similarity("cosine"), options)
    assert error.code == "embeddings_model_missing" and "catalogue" in error.message
    assert refused(similarity("jaccard"), options).param == "grader.evaluation_metric"


def multi(formula: str) -> dict[str, Any]:
    return {"type": "multi", "name": "m", "calculate_output": formula, "graders": {
        "exact": check("eq", "{{sample.output_text}}", "{{item.ref}}"),
        "fuzzy": similarity("fuzzy_match"),
    }}  # fmt: skip


def test_multi_combines_sub_rewards(options) -> None:
    result = run(multi("0.5 * exact + 0.5 * fuzzy"), "abc", {"ref": "abd"}, options)
    assert result.sub_rewards == {"exact": 0.0, "fuzzy": pytest.approx(2 / 3)}
    assert result.reward == pytest.approx(1 / 3)
    assert run(multi("max(exact, fuzzy)"), "abd", {"ref": "abd"}, options).reward == 1.0
    single = {"type": "multi", "name": "m", "calculate_output": "s * 2", "graders": check("eq", "a", "a")}
    assert run(single, "", {}, options).reward == 2.0


def test_multi_formula_is_no_python(options) -> None:
    assert refused(multi("__import__('os').system('true')"), options).param == "grader.calculate_output"
    assert refused(multi("exact +"), options).param == "grader.calculate_output"
    # Attribute access is not part of the formula language: a flag on the sample, never run.
    dunder = run(multi("exact.__class__"), "abc", {"ref": "abd"}, options)
    assert dunder.errors.formula_parse_error and dunder.reward == 0.0
    # Valid syntax that fails on this sample (division by a zero reward) is a flag, not a 500.
    result = run(multi("fuzzy / exact"), "abc", {"ref": "abd"}, options)
    assert result.errors.formula_parse_error and result.reward == 0.0


def python(source: str) -> dict[str, Any]:
    return {"type": "python", "name": "p", "source": source}


def test_python_grader_reads_sample_and_item(options) -> None:
    source = "def grade(sample, item):\n    print('noise')\n    return float(sample['output_text'] == item['ref'])\n"
    assert run(python(source), "yes", {"ref": "yes"}, options).reward == 1.0
    assert run(python(source), "no", {"ref": "yes"}, options).reward == 0.0
    assert refused(python("def grad(s, i): return 1"), options).param == "grader.source"
    assert refused(python("def grade(s, i) return 1"), options).param == "grader.source"


ESCAPES = {
    "socket": "import socket\ndef grade(s, i):\n    socket.create_connection(('127.0.0.1', 6379), timeout=2)\n"
    "    return 1\n",
    "write_outside": "def grade(s, i):\n    open('/usr/owned', 'w').write('x')\n    return 1\n",
    "write_workdir": "def grade(s, i):\n    open('here', 'w').write('x')\n    return 1\n",
    "read_other_file": f"def grade(s, i):\n    return len(open({str(Path(__file__).resolve())!r}).read())\n",
    "fork_bomb": "import os\ndef grade(s, i):\n    while True:\n        os.fork()\n",
    "allocate_10gb": "def grade(s, i):\n    x = bytearray(10 * 1024 ** 3)\n    return 1\n",
    "loop_forever": "def grade(s, i):\n    while True:\n        pass\n",
    "sleep_forever": "import time\ndef grade(s, i):\n    time.sleep(3600)\n",
    "raises": "def grade(s, i):\n    raise ValueError('bad sample')\n",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_python_sandbox_refuses_or_kills(name: str, options) -> None:
    result = run(python(ESCAPES[name]), "x", {}, options)
    assert result.reward == 0.0
    assert result.errors.python_grader_runtime_error
    assert result.errors.python_grader_runtime_error_details
    assert result.response()["metadata"]["errors"]["python_grader_runtime_error"] is True


def left_behind(before: frozenset[str] = frozenset()) -> list[str]:
    """Processes a sandbox may leave (their `stat` lines): this process's children, and orphaned
    zombies of the sandboxes' uids, which nothing reaps while the host's init does not. Processes
    in `before` (other tests' servers, started by this process earlier) are not counted."""
    me, found = str(os.getpid()), []
    slot_uids = range(sandbox.SLOT_UID_BASE, sandbox.SLOT_UID_BASE + sandbox.SLOTS)
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            mine = parent == me or (state == "Z" and entry.stat().st_uid in slot_uids)
            if entry.name.isdigit() and mine and entry.name not in before:
                found.append(stat)
    return found


def test_python_sandboxes_run_side_by_side_each_with_its_own_process_limit(options) -> None:
    """Many sandboxes at once (more than one user's process limit would allow), one of them a fork
    bomb: every other grades, and no process of any sandbox is left behind, zombie or not."""
    grader = python("def grade(s, i):\n    return float(s['output_text'] == i['ref'])\n")
    before = frozenset(stat.split()[0] for stat in left_behind())

    async def go() -> list[Any]:
        bomb = grade(python(ESCAPES["fork_bomb"]), sample_namespace("x"), {}, options)
        calls = [grade(grader, sample_namespace(str(k)), {"ref": str(k % 2)}, options) for k in range(24)]
        return await asyncio.gather(bomb, *calls)

    bomb, *results = asyncio.run(go())
    assert bomb.errors.python_grader_runtime_error
    assert [r.errors.any() for r in results] == [False] * 24, [r.errors.as_dict() for r in results if r.errors.any()]
    assert [r.reward for r in results] == [float(k % 2 == k) for k in range(24)]
    assert left_behind(before) == []


def test_a_cancelled_grading_call_kills_and_reaps_its_sandbox(options) -> None:
    before = frozenset(stat.split()[0] for stat in left_behind())

    async def go() -> None:
        call = asyncio.ensure_future(grade(python(ESCAPES["sleep_forever"]), sample_namespace("x"), {}, options))
        await asyncio.sleep(0.5)
        assert left_behind(before)  # the sandbox is running
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call

    asyncio.run(go())
    assert left_behind(before) == []


def test_python_graders_switched_off(options) -> None:
    options.python_enabled = False
    assert refused(python("def grade(s, i): return 1"), options).code == "python_grader_disabled"


class Answers:
    """A sampler that answers fixed texts: the gateway's part is tested end to end elsewhere."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.seen: list[dict[str, Any]] = []

    async def check_model(self, model: str) -> None:
        if model != "tiny-chat":
            raise GraderConfigError(f"The model `{model}` does not exist.", param="model")

    async def sample(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Sampled:
        self.seen.append({"messages": messages, "params": params})
        text = self.texts.pop(0)
        if text == "down":
            raise SamplerError("inference server unreachable")
        return Sampled(text=text, usage=Usage(prompt_tokens=10, completion_tokens=3, total_tokens=13))


def score_model(**extra: Any) -> dict[str, Any]:
    user = {"role": "user", "content": [{"type": "input_text", "text": "{{sample.output_text}} vs {{item.ref}}"}]}
    return {"type": "score_model", "name": "judge", "model": "tiny-chat", "range": [0, 10],
            "input": [{"role": "developer", "content": "Rate it."}, user], **extra}  # fmt: skip


def test_score_model_renders_asks_for_a_schema_and_counts_tokens(options) -> None:
    options.sampler = Answers('{"result": 7}', "not json", "down")
    ok = run(score_model(sampling_params={"seed": 3, "max_completions_tokens": 20}), "A", {"ref": "B"}, options)
    assert ok.reward == 7.0 and ok.sampled_model_name == "tiny-chat"
    body = ok.response()
    assert body["metadata"]["token_usage"] == 13
    assert body["model_grader_token_usage_per_model"]["tiny-chat"]["prompt_tokens"] == 10
    seen = options.sampler.seen[0]
    assert seen["messages"] == [{"role": "system", "content": "Rate it."}, {"role": "user", "content": "A vs B"}]
    assert seen["params"]["seed"] == 3 and seen["params"]["max_tokens"] == 20
    schema = seen["params"]["response_format"]["json_schema"]["schema"]["properties"]["result"]
    assert schema == {"type": "number", "minimum": 0.0, "maximum": 10.0}
    assert run(score_model(), "A", {"ref": "B"}, options).errors.model_grader_parse_error
    down = run(score_model(), "A", {"ref": "B"}, options)
    assert down.errors.model_grader_server_error and "unreachable" in down.errors.model_grader_server_error_details
    assert refused(score_model(model="gpt-9"), options).param == "model"


def test_label_model_passes_on_passing_labels(options) -> None:
    grader = {**score_model(), "type": "label_model", "labels": ["good", "bad"], "passing_labels": ["good"]}
    grader.pop("range")
    options.sampler = Answers('{"result": "good"}', '{"result": "bad"}')
    assert run(grader, "A", {"ref": "B"}, options).reward == 1.0
    assert run(grader, "A", {"ref": "B"}, options).reward == 0.0
    assert refused({**grader, "passing_labels": ["ugly"]}, options).param == "grader.passing_labels"
