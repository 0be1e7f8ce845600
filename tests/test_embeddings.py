"""Embeddings: the built-in `tiny-embed`, its vLLM pooling server behind `/v1/embeddings`, and the
`cosine` text-similarity grader that embeds through it.

The end-to-end tests share one `ftserve up` whose catalogue lists `tiny-embed` and keeps
`tiny-chat` unserved (`tests/conftest.py`'s `inference_api` serves it), so the module starts one
vLLM server, for the embeddings model alone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from inference.server import InferenceSettings, vllm_arguments
from service.catalog import BaseModel, load_catalog
from service.graders import GradingOptions, check_grader, grade
from service.graders.embeddings import GatewayEmbedder, cosine
from service.settings import Settings
from tests.conftest import BIN, Server, Stack, make_stack
from trainer.tiny_embedder import build_tiny_embedder

KETTLE = "The Aurora kettle has a 5-year warranty."
KETTLE_AGAIN = "The kettle has a two year warranty."
PARIS = "Paris is the capital of France."


def cosine_grader(input_text: str = "{{sample.output_text}}", reference: str = "{{item.ref}}") -> dict:
    return {"type": "text_similarity", "name": "cos", "evaluation_metric": "cosine",
            "input": input_text, "reference": reference}  # fmt: skip


# --- without a server -------------------------------------------------------------------------


def test_cosine_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    pairs = [tuple(rng.normal(size=(2, 64))) for _ in range(5)]
    pairs += [(np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])),  # orthogonal: 0
              (np.array([1.0, -2.0, 3.0]), np.array([-2.0, 4.0, -6.0])),  # opposite: -1
              (np.array([3.0, 4.0]), np.array([6.0, 8.0]))]  # same direction: 1  # fmt: skip
    for a, b in pairs:
        expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine(a.tolist(), b.tolist()) == pytest.approx(expected, abs=1e-12)
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0
    with pytest.raises(ValueError):
        cosine([1.0], [1.0, 2.0])


def test_catalogue_marks_embeddings_models(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert load_catalog(settings).embeddings_model() is None  # none by default: each costs a vLLM process
    out = subprocess.run([str(BIN / "ftserve"), "models", "add", "tiny-embed", "--source", "builtin:tiny-embed",
                          "--task", "embed", "--data-dir", str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    entry = load_catalog(settings).embeddings_model()
    assert entry is not None and entry.name == "tiny-embed" and entry.task == "embed"
    assert load_catalog(settings).resolve("tiny-chat").task == "generate"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        BaseModel(name="x", source="y", task="rerank")  # type: ignore[arg-type]


def test_vllm_runs_the_pooling_runner_without_lora(tmp_path: Path) -> None:
    settings = InferenceSettings(data_dir=tmp_path)
    embed = BaseModel(name="tiny-embed", source="builtin:tiny-embed", task="embed")
    args = vllm_arguments(embed, tmp_path, settings, "127.0.0.1", 8100, gpu=False)
    assert args[args.index("--runner") + 1] == "pooling" and args[args.index("--convert") + 1] == "embed"
    assert not any("lora" in a for a in args) and "--structured-outputs-config" not in args
    chat = vllm_arguments(load_catalog(settings).resolve("tiny-chat"), tmp_path, settings, "127.0.0.1", 8100,  # type: ignore[arg-type]
                          gpu=False)  # fmt: skip
    assert "--enable-lora" in chat and "--runner" not in chat


def _local_embedding(model_dir: Path, text: str) -> np.ndarray:
    """What vLLM should answer for `text`: the normalised mean of the last hidden states."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir)
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    mean = hidden.mean(0).numpy().astype(np.float64)
    return mean / np.linalg.norm(mean)


def test_tiny_embedder_is_deterministic_and_closer_for_shared_words(tmp_path: Path) -> None:
    first, second = build_tiny_embedder(tmp_path / "a"), build_tiny_embedder(tmp_path / "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    modules = json.loads((first / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    kettle, again, paris = (_local_embedding(first, t) for t in (KETTLE, KETTLE_AGAIN, PARIS))
    assert float(kettle @ again) > 0.5 > float(kettle @ paris)


def test_cosine_checked_with_an_embeddings_model_fails_per_sample_without_its_server(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)  # no inference URL for tiny-embed
    embedder = GatewayEmbedder(settings, BaseModel(name="tiny-embed", source="builtin:tiny-embed", task="embed"))
    options = GradingOptions(embedder=embedder)
    grader = asyncio.run(check_grader(cosine_grader(), options))  # accepted: the catalogue has an embeddings model
    result = asyncio.run(grade(grader, {"output_text": "a"}, {"ref": "a"}, options))
    assert result.reward == 0.0 and result.errors.as_dict()["model_grader_server_error"] is True


def test_openapi_document_describes_embeddings_as_openai() -> None:
    from openai.types import CreateEmbeddingResponse, Embedding

    doc = json.loads((Path(__file__).resolve().parent.parent / "openapi" / "openapi.json").read_text())
    operation = doc["paths"]["/v1/embeddings"]["post"]
    assert operation["operationId"] == "createEmbedding"
    schemas = doc["components"]["schemas"]
    for ours, sdk in ((schemas["CreateEmbeddingResponse"], CreateEmbeddingResponse), (schemas["Embedding"], Embedding)):
        wanted = {f.alias or name for name, f in sdk.model_fields.items() if f.is_required()}
        assert wanted <= set(ours["required"])


# --- one `ftserve up` serving tiny-embed ------------------------------------------------------


@pytest.fixture(scope="session", name="embeddings_stack")
def fx_embeddings_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("embeddings"))
    for argv in (["tiny-embed", "--source", "builtin:tiny-embed", "--task", "embed"],
                 ["tiny-chat", "--source", "builtin:tiny-chat", "--no-serve"]):  # fmt: skip
        subprocess.run([str(BIN / "ftserve"), "models", "add", *argv], env=stack.env, check=True, capture_output=True)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session", name="embeddings_api")
def fx_embeddings_api(embeddings_stack: Stack) -> Server:
    server = embeddings_stack.start_api("--workers", "0")
    client = server.client()
    deadline = time.monotonic() + 300
    while True:  # the pooling server starts beside the API, in about half a minute on a CPU
        try:
            client.embeddings.create(model="tiny-embed", input="hi", encoding_format="float")
            return server
        except openai.InternalServerError as exc:
            if exc.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_embeddings_endpoint_answers_the_sdk(embeddings_api: Server) -> None:
    client = embeddings_api.client()
    # The SDK asks for base64 unless told otherwise and decodes it after parsing, so its strict
    # validation (of the string, against a list of floats) is left off for that call, as it would
    # have to be against OpenAI.
    lenient = openai.OpenAI(base_url=embeddings_api.base_url, api_key=embeddings_api.key, max_retries=0)
    answer = lenient.embeddings.create(model="tiny-embed", input=[KETTLE, PARIS])
    assert answer.model == "tiny-embed" and [e.index for e in answer.data] == [0, 1]
    assert answer.usage.prompt_tokens > 0 and answer.usage.total_tokens == answer.usage.prompt_tokens
    vectors = [np.array(e.embedding) for e in answer.data]
    assert all(len(v) == 128 and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    # Mean pooling and normalisation, as the model directory's sentence-transformers files say.
    model_dir = Path(embeddings_api.env["FTSERVE_DATA_DIR"]) / "models" / "tiny-embed"
    assert vectors[0] == pytest.approx(_local_embedding(model_dir, KETTLE), abs=1e-4)
    floats = client.embeddings.create(model="tiny-embed", input=KETTLE, encoding_format="float")
    assert np.array(floats.data[0].embedding) == pytest.approx(vectors[0], abs=1e-6)
    # Another organisation calls it too: it is a catalogue base model.
    other = embeddings_api.client(embeddings_api.other_key).embeddings.create(
        model="tiny-embed", input=KETTLE, encoding_format="float"
    )
    assert np.array(other.data[0].embedding) == pytest.approx(vectors[0], abs=1e-6)


def test_embeddings_and_completions_refuse_the_other_kind_of_model(embeddings_api: Server) -> None:
    client = embeddings_api.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="tiny-chat", input="hi", encoding_format="float")
    assert info.value.code == "model_not_supported" and info.value.param == "model"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-embed", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_supported"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi", encoding_format="float")
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="tiny-embed", input=[], encoding_format="float")
    assert info.value.param == "input"


def test_cosine_grader_through_the_embeddings_server(embeddings_api: Server) -> None:
    client = embeddings_api.client()

    def run(output: str, ref: str):  # type: ignore[no-untyped-def]
        return client.fine_tuning.alpha.graders.run(grader=cosine_grader(), model_sample=output, item={"ref": ref})

    same = run(KETTLE, KETTLE)
    assert same.reward == pytest.approx(1.0, abs=1e-5)
    assert same.metadata.errors.api_model_grader_server_error is False
    assert same.api_model_grader_token_usage_per_model["tiny-embed"]["prompt_tokens"] > 0
    close, unrelated = run(KETTLE_AGAIN, KETTLE).reward, run(PARIS, KETTLE).reward
    assert 1.0 > close > unrelated
    # The grader's number is the cosine of what /v1/embeddings answers for the two texts.
    data = client.embeddings.create(model="tiny-embed", input=[PARIS, KETTLE], encoding_format="float").data
    assert unrelated == pytest.approx(cosine(data[0].embedding, data[1].embedding), abs=1e-6)
    checked = client.fine_tuning.alpha.graders.validate(grader=cosine_grader())
    assert checked.grader.evaluation_metric == "cosine"  # type: ignore[union-attr]


def test_an_embeddings_model_cannot_be_fine_tuned(embeddings_api: Server) -> None:
    from tests.support import qa_jsonl

    client = embeddings_api.client()
    training = client.files.create(file=("t.jsonl", qa_jsonl()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="tiny-embed", training_file=training.id)
    assert caught.value.body["code"] == "model_not_available" and caught.value.body["param"] == "model"
