"""The token cache on disk: the same examples as in-memory tokenisation, built once per job,
rebuilt when its source changes, the same errors for bad lines, and the same training."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import torch
from transformers import AutoTokenizer

from service.catalog import BaseModel
from service.errors import InvalidFileError
from service.settings import Settings
from service.storage import ObjectStorage, open_storage
from tests.conftest import Server
from tests.support import QA, qa_jsonl, wait_for_job
from tests.test_bad_training_files import CHECKED_BY_THE_TRAINER
from tests.test_trainer import Recorder, lora_weights
from trainer import token_cache
from trainer.job import JobFailure, JobSpec, read_examples, tokenize_all, training_examples
from trainer.loop import _batches
from trainer.sft import SFTConfig, load_lora_model, train
from trainer.tiny_model import ensure_tiny_chat

CHUNK = 37
"""Bytes per read: far shorter than a line, so lines cross chunk boundaries everywhere."""


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module", name="tokenizer")
def fx_tokenizer(tiny_chat: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_chat)


def chat_file(count: int = 24) -> bytes:
    """Examples of varied length; some long enough to truncate, one with nothing to learn, blank lines."""
    lines = []
    for i in range(count):
        answer = " ".join(f"word{j}" for j in range((i * 7) % 60 + 1))
        messages = [{"role": "system", "content": "Answer."}, {"role": "user", "content": f"Question {i}?"},
                    {"role": "assistant", "content": answer, "weight": 0 if i == 5 else 1}]  # fmt: skip
        lines.append(json.dumps({"messages": messages}).encode())
        if i % 9 == 0:
            lines.append(b"   ")
    return b"\n".join(lines) + b"\r\n"


def store(tmp_path: Path, content: bytes, key: str = "files/org/file-1") -> ObjectStorage:
    storage = open_storage((tmp_path / "objects").as_uri())
    storage.put_stream(key, [content])
    return storage


def build(storage: ObjectStorage, tokenizer: Any, data_dir: Path, *, max_seq_len: int = 48, **kw: Any) -> Any:
    return token_cache.load_or_build(storage, "files/org/file-1", tokenizer, data_dir=data_dir, job_id="ftjob-1",
                                     max_seq_len=max_seq_len, chunk_bytes=CHUNK, **kw)  # fmt: skip


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 10_000])
def test_lines_split_across_chunks_as_a_joined_file_does(chunk: int) -> None:
    data = b'{"a": 1}\n\n{"b": 2}\r\n  \n{"c": "\xc3\xa9"}\n\n'
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert list(token_cache.lines(iter(chunks))) == list(enumerate(data.split(b"\n"), start=1))


def test_cached_examples_equal_in_memory_tokenisation(tmp_path: Path, tokenizer: Any) -> None:
    content = chat_file()
    storage = store(tmp_path, content)
    expected, truncated = tokenize_all(tokenizer, read_examples(storage, "files/org/file-1", "training_file"), 48)
    assert truncated > 0 and len(expected) == 23  # the test covers truncation and a dropped example

    mapped, reused = build(storage, tokenizer, tmp_path / "data")

    assert not reused
    assert len(mapped) == len(expected) and mapped.manifest.truncated == truncated
    for got, want in zip(mapped, expected, strict=True):
        assert got.input_ids.dtype == np.int32 and got.labels.dtype == np.int32
        assert np.array_equal(got.input_ids, want.input_ids) and np.array_equal(got.labels, want.labels)
        assert got.truncated == want.truncated
    assert np.array_equal(mapped[-1].labels, expected[-1].labels)
    directory = tmp_path / "data" / "token-cache" / "ftjob-1"
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "data" / "token-cache").stat().st_mode & 0o777) == "0o700"


def test_a_resumed_attempt_reuses_the_cache(tmp_path: Path, tokenizer: Any) -> None:
    storage = store(tmp_path, chat_file())
    first, _ = build(storage, tokenizer, tmp_path / "data")
    ids = first.directory / "input_ids.i32"
    inode = ids.stat().st_ino

    again, reused = build(storage, tokenizer, tmp_path / "data")

    assert reused and ids.stat().st_ino == inode
    assert len(again) == len(first) and np.array_equal(again[7].labels, first[7].labels)


@pytest.mark.parametrize("change", ["max_seq_len", "tokenizer", "file", "version", "half-written"])
def test_a_changed_source_rebuilds(tmp_path: Path, tokenizer: Any, change: str) -> None:
    storage = store(tmp_path, chat_file())
    first, _ = build(storage, tokenizer, tmp_path / "data")
    manifest_path = first.directory / "manifest.json"
    kw: dict[str, Any] = {}
    if change == "max_seq_len":
        kw["max_seq_len"] = 4096
    elif change == "tokenizer":
        manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "tokenizer": "another"}))
    elif change == "file":
        storage.put_stream("files/org/file-1", [chat_file(30)])
    elif change == "version":
        manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "version": 0}))
    else:  # a build that stopped before its manifest was written
        manifest_path.unlink()
    (first.directory.parent / ".build-crashed").mkdir()

    rebuilt, reused = build(storage, tokenizer, tmp_path / "data", **kw)

    assert not reused
    assert not list(rebuilt.directory.parent.glob(".build-*"))  # a crashed build's leftovers are gone
    if change == "max_seq_len":
        assert rebuilt.manifest.truncated == 0 and rebuilt.manifest.tokens > first.manifest.tokens
    if change == "file":
        assert len(rebuilt) == 29


def test_the_tokenizer_digest_covers_the_chat_template(tmp_path: Path, tiny_chat: Path, tokenizer: Any) -> None:
    copy = tmp_path / "tokenizer"
    copy.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (copy / name).write_bytes((tiny_chat / name).read_bytes())
    same = token_cache.tokenizer_digest(AutoTokenizer.from_pretrained(copy))
    (copy / "chat_template.jinja").write_text((tiny_chat / "chat_template.jinja").read_text() + "\n")
    assert same == token_cache.tokenizer_digest(tokenizer)
    assert token_cache.tokenizer_digest(AutoTokenizer.from_pretrained(copy)) != same


@pytest.mark.parametrize(("name", "content", "code", "line_number"), CHECKED_BY_THE_TRAINER,
                         ids=[c[0] for c in CHECKED_BY_THE_TRAINER])  # fmt: skip
def test_bad_lines_fail_the_job_with_their_code_and_line(
    tmp_path: Path, tokenizer: Any, name: str, content: bytes, code: str, line_number: int
) -> None:
    storage = store(tmp_path, content)
    base = BaseModel(name="tiny-chat", source="builtin:tiny-chat")
    spec = JobSpec(job_id="ftjob-1", base=base, fine_tuned_model="ft", seed=0, hyperparameters={},
                   training_key="files/org/file-1", validation_key=None, storage_prefix="jobs/x")  # fmt: skip
    with pytest.raises(JobFailure) as caught:
        training_examples(spec, storage, Settings(data_dir=tmp_path / "data"), tokenizer)
    assert (caught.value.code, caught.value.param) == (code, "training_file")
    assert caught.value.message.startswith(f"Invalid file format: line {line_number}:")
    directory = tmp_path / "data" / "token-cache" / "ftjob-1"
    assert not (directory / "current").exists() and not list(directory.glob(".build-*"))


def test_a_file_of_blank_lines_is_empty(tmp_path: Path, tokenizer: Any) -> None:
    storage = store(tmp_path, b"\n  \n")
    with pytest.raises(InvalidFileError) as caught:
        build(storage, tokenizer, tmp_path / "data")
    assert caught.value.code == "empty_file"


def test_remove_deletes_the_jobs_cache(tmp_path: Path, tokenizer: Any) -> None:
    storage = store(tmp_path, chat_file())
    mapped, _ = build(storage, tokenizer, tmp_path / "data")
    token_cache.remove(tmp_path / "data", "ftjob-1")
    assert not mapped.directory.parent.exists()
    with pytest.raises(ValueError):
        token_cache.job_cache_dir(tmp_path, "../elsewhere")


def test_training_on_cached_examples_equals_training_on_a_list(tmp_path: Path, tiny_chat: Path, tokenizer: Any) -> None:
    storage = store(tmp_path, chat_file())
    listed, _ = tokenize_all(tokenizer, read_examples(storage, "files/org/file-1", "training_file"), 48)
    mapped, _ = build(storage, tokenizer, tmp_path / "data")
    config = SFTConfig(n_epochs=1, batch_size=4, learning_rate=5e-3, seed=3, max_tokens_per_microbatch=96)
    runs = []
    for examples in (listed, mapped):
        recorder = Recorder()
        model = load_lora_model(tiny_chat, config.lora, seed=config.seed)
        train(model, config, examples, recorder, pad_id=tokenizer.pad_token_id)
        runs.append(([m["train_loss"] for _, m in recorder.metrics], lora_weights(model)))
    assert len(runs[0][0]) == 6 and runs[0][0] == runs[1][0]
    for name, tensor in runs[0][1].items():
        assert torch.equal(tensor, runs[1][1][name]), name


def test_a_finished_job_leaves_no_token_cache(server: Server, client: openai.OpenAI) -> None:
    training = client.files.create(file=("t.jsonl", qa_jsonl(QA[:12])), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                         hyperparameters={"n_epochs": 1, "batch_size": 4})  # fmt: skip
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    cache = Path(server.env["FTSERVE_DATA_DIR"]) / "token-cache"
    assert cache.is_dir()  # the worker built its cache here
    assert not (cache / job.id).exists()


def test_the_epoch_order_is_the_shuffle_of_a_list() -> None:
    """The loop's compact order (an int64 array) is the permutation a list would have had, so
    resumed and earlier runs see the same batches."""
    order = list(range(103))
    random.Random(7).shuffle(order)
    expected = [order[i : i + 8] for i in range(0, 103, 8)]
    assert [list(batch) for batch in _batches(range(103), 8, random.Random(7))] == expected
