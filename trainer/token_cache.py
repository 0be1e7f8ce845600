"""A job's training file, tokenised once into token files on disk, so no worker holds it in memory.

The stored JSONL file is read in chunks and split into lines across chunk boundaries; each line
is checked as the upload checked it, tokenised, and appended to three files under
`data_dir/token-cache/{job_id}/current/`:

- `input_ids.i32` and `labels.i32`: every kept example's tokens end to end (int32);
- `offsets.i64`: where each example starts, plus the end (int64, one more than the examples);
- `truncated.u8`: whether each example was cut at `max_seq_len`.

Training reads each example from them when its step needs it (`CachedExamples`).

`manifest.json`, written last, names what the arrays were built from (file key and size,
tokenizer digest, `max_seq_len`, method, format version). A resumed attempt of the job on the
same machine reuses the arrays when the manifest matches and rebuilds them when anything differs.
A build goes to a `.build-*` directory that is renamed to `current` only once complete, so a
crash mid-build never leaves half a file that a later attempt would read. `remove` deletes the
whole directory when the job ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from service.datasets import check_example, check_item_fields, check_shape, grader_item_fields, parse_line
from service.errors import InvalidFileError
from service.storage import CHUNK_BYTES, ObjectStorage
from trainer.data import TokenizedExample, tokenize_chat

FORMAT_VERSION = 1
"""Bumped whenever what the arrays hold changes (the tokenisation rules included): older caches rebuild."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "tokenizer.model")  # fmt: skip
CURRENT = "current"
ARRAYS = {"input_ids.i32": np.int32, "labels.i32": np.int32, "offsets.i64": np.int64, "truncated.u8": np.uint8}
"""The cache's files and their element types."""
WRITE_BUFFER = 1 << 20
"""Bytes buffered per array file while building: a few MiB in all, whatever the file's size."""


def cache_root(data_dir: Path) -> Path:
    return data_dir / "token-cache"


def job_cache_dir(data_dir: Path, job_id: str) -> Path:
    if not job_id or "/" in job_id or job_id.startswith("."):  # ids are ours, but a path must stay inside
        raise ValueError(f"not a job id: {job_id!r}")
    return cache_root(data_dir) / job_id


def lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """`(line number, raw line)` for each `\\n`-separated line of the chunks' concatenation, as
    `b"".join(chunks).split(b"\\n")` numbers them, without ever holding more than one chunk and
    one line.

    Example:
        >>> list(lines(iter([b"a\\nb", b"c\\n", b"d"])))
        [(1, b'a'), (2, b'bc'), (3, b'd')]
    """
    pending = b""
    number = 0
    for chunk in chunks:
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            number += 1
            yield number, part
    yield number + 1, pending


def checked_examples(
    chunks: Iterator[bytes], param: str, method: str = "supervised", grader: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Each example of a JSONL stream, checked again for the job's method (the file may predate a
    rule), with the fields a reinforcement job's grader reads; raises `InvalidFileError` naming
    the line, as the upload's checks do."""
    fields = grader_item_fields(grader) if grader else []
    for line_number, raw in lines(chunks):
        example = parse_line(raw, line_number, param)
        if example is not None:
            check_shape(check_example(example, line_number, param), line_number, param, method)
            check_item_fields(example, fields, line_number, param)
            yield example


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of the files that decide how text becomes tokens (vocabulary, special tokens, chat
    template), read from the directory the tokenizer was loaded from."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    base = Path(getattr(tokenizer, "name_or_path", "") or ".")
    for name in TOKENIZER_FILES:
        path = base / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What a cache was built from, and what it holds; a cache is reused only when `source` matches."""

    key: str
    """Storage key of the training file."""
    size: int | None
    """The stored file's size in bytes (file objects are never rewritten; a size change means another file)."""
    tokenizer: str
    """`tokenizer_digest` of the tokenizer that built the arrays."""
    max_seq_len: int
    method: str
    version: int = FORMAT_VERSION
    examples: int = 0
    """Examples kept (those with a token to learn from)."""
    tokens: int = 0
    truncated: int = 0
    """Examples cut at `max_seq_len`, among all the file's examples (kept or not)."""
    read: int = 0
    """Examples in the file."""

    def source(self) -> tuple[Any, ...]:
        return self.key, self.size, self.tokenizer, self.max_seq_len, self.method, self.version


class CachedExamples:
    """The cached examples as a read-only sequence of `TokenizedExample`s, each read from the files
    when asked for: only the examples of the current step are in memory.

    Each read is a `pread` into a fresh array, not a view into a memory map: training reads
    examples in random order, and on a map each page fault also maps the cached pages around it
    (the kernel's fault-around, which `MADV_RANDOM` does not turn off), so the worker's RSS grew
    by about 135 KiB per example read, towards the size of the whole cache.
    """

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.directory, self.manifest = directory, manifest
        self._fds = {name: os.open(directory / name, os.O_RDONLY) for name in ARRAYS}
        self._closer = weakref.finalize(self, _close_all, list(self._fds.values()))

    def __len__(self) -> int:
        return self.manifest.examples

    @overload
    def __getitem__(self, index: int) -> TokenizedExample: ...
    @overload
    def __getitem__(self, index: slice) -> list[TokenizedExample]: ...
    def __getitem__(self, index: int | slice) -> TokenizedExample | list[TokenizedExample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, end = (int(o) for o in self._read("offsets.i64", index, 2))
        truncated = bool(self._read("truncated.u8", index, 1)[0])
        return TokenizedExample(self._read("input_ids.i32", start, end - start),
                                self._read("labels.i32", start, end - start), truncated)  # fmt: skip

    def __iter__(self) -> Iterator[TokenizedExample]:
        return (self[i] for i in range(len(self)))

    def _read(self, name: str, first: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=ARRAYS[name])
        if count and os.preadv(self._fds[name], [out], first * out.itemsize) != out.nbytes:
            raise OSError(f"{self.directory / name}: shorter than its manifest says")
        return out

    def close(self) -> None:
        self._closer()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


class _Writer:
    """The four array files of a build, appended to through small buffers."""

    def __init__(self, directory: Path) -> None:
        self.files = {name: (directory / name).open("wb", buffering=WRITE_BUFFER) for name in ARRAYS}
        self.tokens = 0
        self.files["offsets.i64"].write(np.zeros(1, dtype=np.int64).tobytes())

    def append(self, example: TokenizedExample) -> None:
        self.files["input_ids.i32"].write(example.input_ids.tobytes())
        self.files["labels.i32"].write(example.labels.tobytes())
        self.tokens += len(example.input_ids)
        self.files["offsets.i64"].write(np.array([self.tokens], dtype=np.int64).tobytes())
        self.files["truncated.u8"].write(bytes([example.truncated]))

    def close(self) -> None:
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())  # complete on disk before the rename makes it current
            handle.close()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder per job directory at a time (a job's data-parallel ranks share it)."""
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _read_manifest(directory: Path) -> Manifest | None:
    try:
        return Manifest(**json.loads((directory / "manifest.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def load_or_build(
    storage: ObjectStorage,
    key: str,
    tokenizer: Any,
    *,
    data_dir: Path,
    job_id: str,
    max_seq_len: int,
    method: str = "supervised",
    param: str = "training_file",
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[CachedExamples, bool]:
    """The job's tokenised training file, and whether an earlier attempt's cache was reused.

    Raises `InvalidFileError` for a bad line (as `checked_examples`) or a file without examples
    (`empty_file`); a failed build leaves no arrays behind.
    """
    directory = job_cache_dir(data_dir, job_id)
    _private_dir(cache_root(data_dir))
    _private_dir(directory)
    wanted = Manifest(key, storage.size(key), tokenizer_digest(tokenizer), max_seq_len, method)
    with _locked(directory):
        current = directory / CURRENT
        found = _read_manifest(current)
        if found is not None and found.source() == wanted.source():
            return CachedExamples(current, found), True
        for stale in directory.glob(".build-*"):  # an attempt that crashed mid-build
            shutil.rmtree(stale, ignore_errors=True)
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=directory))
        try:
            manifest = _build(storage.read_chunks(key, chunk_bytes), tokenizer, build, wanted, param)
            shutil.rmtree(current, ignore_errors=True)
            build.rename(current)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        return CachedExamples(current, manifest), False


def _build(chunks: Iterator[bytes], tokenizer: Any, build: Path, wanted: Manifest, param: str) -> Manifest:
    writer = _Writer(build)
    examples = read = truncated = 0
    try:
        for example in checked_examples(chunks, param, wanted.method):
            tokenized = tokenize_chat(tokenizer, example, max_tokens=wanted.max_seq_len)
            read += 1
            truncated += tokenized.truncated
            if tokenized.trained_tokens > 0:  # an example with nothing to learn is not trained on
                writer.append(tokenized)
                examples += 1
    finally:
        writer.close()
    if not read:
        raise InvalidFileError("Invalid file format: the file has no examples", param=param, code="empty_file")
    fields = {"examples": examples, "tokens": writer.tokens, "truncated": truncated, "read": read}
    manifest = Manifest(**{**asdict(wanted), **fields})
    path = build / "manifest.json"
    with path.open("w") as handle:
        json.dump(asdict(manifest), handle)
        handle.flush()
        os.fsync(handle.fileno())
    return manifest


def remove(data_dir: Path, job_id: str) -> None:
    """Delete the job's cache (when the job has ended: it will not be resumed)."""
    shutil.rmtree(job_cache_dir(data_dir, job_id), ignore_errors=True)
