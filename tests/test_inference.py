"""Serving tuned models: `ftserve up` with its vLLM server, driven by the official SDKs.

One stack for the session (`inference_api` in conftest.py; vLLM takes tens of seconds to start on
a CPU): SQLite, local storage, a private Redis, one trainer worker and the inference server for
`tiny-chat`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import BIN, Server, Stack, inference_ready
from tests.support import QA, free_port, qa_jsonl, wait_for_http, wait_for_job

MEMORISE = {"n_epochs": 30, "batch_size": 2}
OTHER_QA = [(q, f"Not {a}") for q, a in QA]
"""The same questions with different answers: a second adapter that must not be confused with the first."""
ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="module", name="stack")
def fx_stack(inference_stack: Stack) -> Stack:
    return inference_stack


@pytest.fixture(scope="module", name="api")
def fx_api(inference_api: Server) -> Server:
    return inference_api


@pytest.fixture(name="client")
def fx_client(api: Server) -> openai.OpenAI:
    return api.client()


def train(client: openai.OpenAI, pairs: list[tuple[str, str]], suffix: str) -> str:
    training = client.files.create(file=("qa.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-chat", training_file=training.id, suffix=suffix, seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": MEMORISE}},
    )  # fmt: skip
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model
    return job.fine_tuned_model


@pytest.fixture(scope="module", name="tuned")
def fx_tuned(api: Server) -> str:
    return train(api.client(), QA, "qa")


def answer(client: openai.OpenAI, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=20
    )
    assert reply.model == model
    return (reply.choices[0].message.content or "").strip()


def streamed_answer(client: openai.OpenAI, model: str, question: str) -> tuple[str, object]:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=20,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    text, usage = "", None
    for chunk in stream:
        assert chunk.model == model
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            text += choice.delta.content or ""
    return text.strip(), usage


def test_the_tuned_model_answers_as_trained(client: openai.OpenAI, tuned: str) -> None:
    expected = [a for _, a in QA]
    assert [answer(client, tuned, q) for q, _ in QA] == expected
    text, usage = streamed_answer(client, tuned, QA[0][0])
    assert text == QA[0][1]
    assert usage is not None and usage.completion_tokens > 0
    base = [answer(client, "tiny-chat", q) for q, _ in QA]
    assert sum(b == a for b, a in zip(base, expected, strict=True)) == 0


def test_checkpoints_answer_too(client: openai.OpenAI, tuned: str) -> None:
    job_id = tuned.rsplit(":", 1)[1]
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    final = next(c for c in checkpoints if c.step_number == 300)
    assert answer(client, final.fine_tuned_model_checkpoint, QA[1][0]) == QA[1][1]
    earlier = next(c for c in checkpoints if c.step_number < 300)
    assert answer(client, earlier.fine_tuned_model_checkpoint, QA[1][0])  # servable, whatever it learnt by then


def test_models_are_listed_per_organisation(api: Server, client: openai.OpenAI, tuned: str) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert listed["tiny-chat"].owned_by == "system"
    assert listed[tuned].owned_by == "acme" and listed[tuned].created > 0
    assert f"{tuned}:ckpt-step-300" in listed
    assert client.models.retrieve(tuned).id == tuned

    other = api.client(api.other_key)
    assert tuned not in {m.id for m in other.models.list()}
    with pytest.raises(openai.NotFoundError) as caught:
        other.models.retrieve(tuned)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        other.chat.completions.create(model=tuned, messages=[{"role": "user", "content": QA[0][0]}])
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


@pytest.fixture(scope="module", name="other")
def fx_other(api: Server) -> str:
    return train(api.client(), OTHER_QA, "other")


def test_two_adapters_and_the_base_at_once_each_answer_their_own(client: openai.OpenAI, tuned: str, other: str) -> None:
    calls = [(m, i) for i in range(len(QA)) for m in (tuned, other, "tiny-chat")]
    with ThreadPoolExecutor(12) as pool:  # concurrent requests share vLLM batches
        replies = list(pool.map(lambda call: answer(client, call[0], QA[call[1]][0]), calls))
    for (model, index), reply in zip(calls, replies, strict=True):
        if model == tuned:
            assert reply == QA[index][1]
        elif model == other:
            assert reply == OTHER_QA[index][1]
        else:
            assert reply not in (QA[index][1], OTHER_QA[index][1])


def test_completions_and_bad_requests(api: Server, client: openai.OpenAI, tuned: str) -> None:
    text = client.completions.create(model=tuned, prompt="<|im_start|>user\n", max_tokens=5, temperature=0)
    assert text.model == tuned and text.choices[0].text is not None
    body = {"model": tuned, "prompt": "Item", "max_tokens": 4, "stream": True}
    headers = {"authorization": f"Bearer {api.key}"}
    with httpx.stream("POST", f"{api.base_url}/completions", headers=headers, json=body) as response:
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e[5:])["model"] == tuned for e in events[:-1])

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="ft:tiny-chat:acme::ftjob-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=tuned, messages="not a list")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as caught:  # vLLM's own check comes back in the envelope
        client.chat.completions.create(model=tuned, messages=[{"role": "user", "content": "x"}], n=3, temperature=0)
    assert caught.value.body["type"] and "n" in caught.value.body["message"]


def test_sampling_parameters_reach_vllm(client: openai.OpenAI, tuned: str) -> None:
    ask = [{"role": "user", "content": QA[4][0]}]
    short = client.chat.completions.create(model=tuned, messages=ask, temperature=0, max_completion_tokens=2)
    assert short.usage is not None and short.usage.completion_tokens == 2
    assert short.choices[0].finish_reason == "length"
    stopped = client.chat.completions.create(model=tuned, messages=ask, temperature=0, stop=[" has"])
    assert stopped.choices[0].message.content == QA[4][1].split(" has")[0]
    assert stopped.choices[0].finish_reason == "stop"
    two = client.chat.completions.create(model=tuned, messages=ask, n=2, temperature=1.5, seed=11, max_tokens=8)
    again = client.chat.completions.create(model=tuned, messages=ask, n=2, temperature=1.5, seed=11, max_tokens=8)
    assert len(two.choices) == 2
    assert [c.message.content for c in two.choices] == [c.message.content for c in again.choices]
    forced = client.chat.completions.create(
        model=tuned, messages=ask, temperature=0, max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "code", "schema": {
            "type": "object", "properties": {"code": {"type": "string", "maxLength": 4}}, "required": ["code"],
            "additionalProperties": False}}},
    )  # fmt: skip
    assert set(json.loads(forced.choices[0].message.content or "")) == {"code"}


def test_the_node_sdk_runs_the_same_flow(api: Server) -> None:
    node = shutil.which("node")
    assert node, "node is needed for this test"
    assert (NODE_DIR / "node_modules" / "openai").exists(), "run `npm ci --prefix tests/node` (CI does)"
    env = {**os.environ, "BASE_URL": api.base_url, "API_KEY": api.key, "OTHER_KEY": api.other_key,
           "TRAINING": qa_jsonl().decode(), "QA": json.dumps(QA)}  # fmt: skip
    result = subprocess.run([node, str(NODE_DIR / "flow.mjs")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node flow ok" in result.stdout


def test_adapters_evicted_from_a_full_cache_are_fetched_again(
    stack: Stack, tuned: str, other: str, tmp_path: Path
) -> None:
    """A second inference server with room for one adapter on disk and one in memory: taking
    turns, the two adapters evict each other, and each must answer every time."""
    port = free_port()
    env = {**stack.env, "FTSERVE_ADAPTER_CACHE_DIR": str(tmp_path / "cache"), "FTSERVE_ADAPTER_CACHE_BYTES": "1",
           "FTSERVE_INFERENCE_MAX_LORAS": "1", "FTSERVE_INFERENCE_MAX_CPU_LORAS": "1",
           "FTSERVE_INFERENCE_API_KEY": "sk-ftinf-test"}  # fmt: skip
    with (tmp_path / "inference.log").open("wb") as log:
        server = subprocess.Popen([str(BIN / "ftserve"), "inference", "--base-model", "tiny-chat", "--port", str(port)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout_s=300, proc=server)
        vllm = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-ftinf-test", max_retries=0)

        def adapter_name(model: str) -> str:  # the name the gateway gives vLLM: the storage prefix
            job_id = model.rsplit(":", 1)[1]
            (marker,) = (stack.data_dir / "objects").glob(f"jobs/*/{job_id}/adapter/ftserve.json")
            return marker.parent.relative_to(stack.data_dir / "objects").as_posix() + "/"

        for model, pairs in [(tuned, QA), (other, OTHER_QA)] * 2:
            reply = vllm.chat.completions.create(model=adapter_name(model), temperature=0, max_tokens=20,
                                                 messages=[{"role": "user", "content": pairs[4][0]}])  # fmt: skip
            assert (reply.choices[0].message.content or "").strip() == pairs[4][1]
        assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


def test_the_inference_server_answers_only_the_gateway(stack: Stack, api: Server, tuned: str) -> None:
    """vLLM's `/v1` (completions, and the runtime LoRA loading the resolver needs) refuses a
    request without the key `ftserve up` gave the gateway alone, or with a client's API key."""
    logs = "".join(p.read_text(errors="replace") for p in sorted(stack.data_dir.glob("server-*.log")))
    url = re.findall(r"inference server for tiny-chat starting on (http://\S+)", logs)[-1]
    adapter = next((stack.data_dir / "objects").glob("jobs/*/*/adapter/ftserve.json")).parent
    name = adapter.relative_to(stack.data_dir / "objects").as_posix() + "/"
    for headers in ({}, {"authorization": f"Bearer {api.key}"}):
        for path, body in [
            ("/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
            ("/v1/models", None),
            ("/v1/unload_lora_adapter", {"lora_name": name}),
        ]:
            refused = httpx.request("POST" if body else "GET", url + path, json=body, headers=headers, timeout=30)
            assert refused.status_code == 401, (path, refused.text)
    assert answer(api.client(), tuned, QA[0][0]) == QA[0][1]  # the gateway's own requests go through


def test_a_restarted_inference_server_serves_the_adapter_again(stack: Stack, api: Server, tuned: str) -> None:
    client = api.client()
    pids = subprocess.run(["pgrep", "-f", "inference.server --base-model tiny-chat"], capture_output=True, text=True)
    mine = f"FTSERVE_DATA_DIR={stack.data_dir}".encode()
    servers = [int(p) for p in pids.stdout.split() if mine in Path(f"/proc/{p}/environ").read_bytes()]
    assert len(servers) == 1
    # Four long sampled answers at once: seconds of decoding, so the kill lands mid-stream.
    stream = client.chat.completions.create(
        model=tuned, messages=[{"role": "user", "content": QA[2][0]}], max_tokens=900, stream=True,
        n=4, temperature=1.0, extra_body={"ignore_eos": True},
    )  # fmt: skip
    chunks = iter(stream)
    for _ in range(3):
        assert next(chunks).model == tuned
    os.killpg(servers[0], signal.SIGKILL)  # vLLM and its engine processes, as a crash would
    with pytest.raises(openai.APIError) as broken:  # the SDK raises on the stream's `error` event
        for _ in chunks:
            pass
    assert "stopped in the middle" in broken.value.message
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=tuned, messages=[{"role": "user", "content": QA[2][0]}])
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "5"
    inference_ready(api)  # `ftserve up` starts it again
    assert answer(client, tuned, QA[2][0]) == QA[2][1]


def test_a_deleted_model_is_gone(api: Server, client: openai.OpenAI, tuned: str) -> None:
    inference_ready(api)
    deleted = client.models.delete(tuned)
    assert deleted.deleted is True and deleted.id == tuned
    with pytest.raises(openai.NotFoundError):
        answer(client, tuned, QA[0][0])
    assert tuned not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.models.delete(tuned)
    with pytest.raises(openai.BadRequestError):
        client.models.delete("tiny-chat")
    assert answer(client, f"{tuned}:ckpt-step-300", QA[0][0]) == QA[0][1]  # its checkpoints stay
