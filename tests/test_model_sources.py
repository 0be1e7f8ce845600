"""Base model sources: `ftserve models add` checks them, and a job on one that cannot load fails
at once with the cause and the fix (no restarts, no "stopped responding").

The model directories here are copies of the built-in `tiny-chat` with a part taken away; the
GGUF path itself runs on a real model in `test_pretrained_model.py`.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import botocore.exceptions
import openai
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from service.fine_tuning.retrying import is_transient
from tests.conftest import BIN, make_stack
from tests.support import qa_jsonl
from trainer.tiny_model import ensure_tiny_chat


@pytest.fixture(scope="module", name="tiny_dir")
def fx_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


def without_chat_template(tiny_dir: Path, target: Path) -> Path:
    shutil.copytree(tiny_dir, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def models_add(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ftserve"), "models", "add", *args],
        env={"PATH": str(BIN), "FTSERVE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_models_add_refuses_a_directory_without_a_chat_template_unless_one_is_given(
    tiny_dir: Path, tmp_path: Path
) -> None:
    source = without_chat_template(tiny_dir, tmp_path / "no-template")
    refused = models_add(tmp_path / "data", "plain", "--source", str(source))
    assert refused.returncode == 2
    assert "no chat template" in refused.stderr and "--chat-template FILE" in refused.stderr
    assert not (tmp_path / "data" / "models.json").exists()  # nothing written

    template = tmp_path / "template.jinja"
    template.write_text((tiny_dir / "chat_template.jinja").read_text())
    added = models_add(tmp_path / "data", "plain", "--source", str(source), "--chat-template", str(template))
    assert added.returncode == 0, added.stderr
    (entry,) = json.loads((tmp_path / "data" / "models.json").read_text())["models"]
    assert entry["chat_template"] == template.read_text() and entry["source"] == str(source)


def test_models_add_refuses_a_template_that_drops_the_answer(tiny_dir: Path, tmp_path: Path) -> None:
    source = without_chat_template(tiny_dir, tmp_path / "no-template")
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}{% endfor %}")
    refused = models_add(tmp_path / "data", "plain", "--source", str(source), "--chat-template", str(template))
    assert refused.returncode == 2 and "drops the assistant's message" in refused.stderr


def test_models_add_names_a_missing_path_and_an_unreachable_hub_id(tmp_path: Path) -> None:
    missing = models_add(tmp_path, "gone", "--source", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    # One line that names the source and the fix: the check's own message, not a traceback.
    assert f"ftserve: {tmp_path / 'nowhere'}: no such file or directory on this machine" in missing.stderr
    assert "Traceback" not in missing.stderr
    hub = models_add(tmp_path, "qwen", "--source", "Qwen/Qwen2.5-0.5B-Instruct")
    assert hub.returncode == 2
    assert "ftserve: The base model 'Qwen/Qwen2.5-0.5B-Instruct' could not be fetched" in hub.stderr
    assert "Traceback" not in hub.stderr
    assert "--source PATH" in hub.stderr  # the fix


def test_models_add_refuses_an_architecture_that_does_not_generate(tiny_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "encoder"
    shutil.copytree(tiny_dir, source)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "t5", "architectures": ["T5EncoderModel"]}))
    refused = models_add(tmp_path / "data", "enc", "--source", str(source))
    assert refused.returncode == 2 and "is not a text-generation model" in refused.stderr


def test_only_faults_that_may_pass_are_transient() -> None:
    assert is_transient(ConnectionResetError("reset by peer"))
    assert is_transient(TimeoutError())
    assert is_transient(socket.gaierror("temporary failure in name resolution"))
    assert is_transient(botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    slow_down = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}
    assert is_transient(botocore.exceptions.ClientError(slow_down, "PutObject"))
    # What trying again cannot cure: a missing file, a hub that is not there offline, a refused key.
    assert not is_transient(FileNotFoundError(2, "No such file or directory"))
    assert not is_transient(LocalEntryNotFoundError("offline and not in the cache"))
    assert not is_transient(PermissionError(13, "Permission denied"))
    denied = {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
    assert not is_transient(botocore.exceptions.ClientError(denied, "GetObject"))


def test_a_job_on_a_source_that_cannot_load_fails_on_its_first_attempt_naming_the_source_and_the_fix(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stack = make_stack(request, "sqlite-local", tmp_path, HF_HUB_OFFLINE="1")
    for name, source in (("hub-model", "example-org/not-on-this-machine"), ("gone", "/srv/models/gone")):
        added = models_add(tmp_path, name, "--source", source, "--skip-check")  # as a hand-edited catalogue
        assert added.returncode == 0, added.stderr
    try:
        client = stack.start_api("--no-inference").client()
        pairs = [(f"question {i}?", f"answer {i}") for i in range(10)]
        training = client.files.create(file=("qa.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
        jobs = {
            source: client.fine_tuning.jobs.create(model=name, training_file=training.id)
            for name, source in (("hub-model", "example-org/not-on-this-machine"), ("gone", "/srv/models/gone"))
        }
        deadline = time.monotonic() + 120
        for source, job in jobs.items():
            while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("failed", "succeeded"):
                assert time.monotonic() < deadline, f"{job.id} still {job.status}"
                time.sleep(0.3)
            assert job.status == "failed" and job.error is not None
            assert job.error.code == "base_model_unavailable" and job.error.param == "model"
            assert source in job.error.message and "ftserve models add" in job.error.message
            messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
            assert job.error.message in messages
            assert not any("stopped responding" in m for m in messages)  # failed on its first attempt
    finally:
        stack.stop()


def test_ftserve_up_starts_a_server_for_a_model_added_while_it_runs_and_says_when_none_can_serve(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stack = make_stack(request, "sqlite-local", tmp_path, HF_HUB_OFFLINE="1")
    assert models_add(tmp_path, "tiny-chat", "--source", "builtin:tiny-chat", "--no-serve").returncode == 0
    try:
        server = stack.start_api()  # inference on, but nothing in the catalogue to serve
        client = server.client()
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503 and caught.value.code == "model_not_served"
        assert "serve: false" in caught.value.message

        # Added while `ftserve up` runs: its server starts without a restart. This one cannot load its
        # model, so it is not restarted in a loop, and the gateway says no server runs for it.
        added = models_add(tmp_path, "late", "--source", "/srv/models/late", "--skip-check")
        assert added.returncode == 0, added.stderr
        log = tmp_path / "server-0.log"
        deadline = time.monotonic() + 120
        while "inference server for late exited with 3 and is not restarted" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        assert "inference server for late starting on" in log.read_text()
        time.sleep(3)  # one more pass of the supervisor
        assert log.read_text().count("inference server for late exited") == 1
        assert "/srv/models/late: no such file or directory" in (tmp_path / "logs" / "inference-late.log").read_text()
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="late", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.code == "model_not_served"
    finally:
        stack.stop()
