"""Line-by-line checks of fine-tuning JSONL, usable on a stream of byte chunks.

The API runs these checks at upload so that a malformed file is refused at once; the trainer
runs them again, with deeper ones, before training. Each problem raises `InvalidFileError` with
a `code` and a message that names the line.

    >>> check = JsonlChecker()
    >>> check.feed(b'{"messages": [{"role": "user", "content": "hi"},')
    >>> check.feed(b' {"role": "assistant", "content": "hello"}]}\\n')
    >>> check.close()
    1
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from service.errors import InvalidFileError

if TYPE_CHECKING:
    from service.settings import Settings

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_LINE_BYTES = 64 * 1024 * 1024


def _fail(line: int, code: str, detail: str, param: str) -> InvalidFileError:
    return InvalidFileError(f"Invalid file format: line {line}: {detail}", param=param, code=code)


def check_message(message: Any, line: int, index: int, param: str) -> None:
    """One chat message: a known role, content where it is needed, `weight` 0/1 on assistants only."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _fail(line, "invalid_message", f"{where} is not an object", param)
    role = message.get("role")
    if role not in ROLES:
        raise _fail(line, "invalid_role", f"{where} has role {role!r}; expected one of {sorted(ROLES)}", param)
    content = message.get("content")
    calls = message.get("tool_calls") or message.get("function_call")
    if content is None and not (role == "assistant" and calls):
        raise _fail(line, "missing_content", f"{where} ({role}) has no content", param)
    if content is not None and not isinstance(content, str | list):
        raise _fail(line, "invalid_content", f"{where} content must be a string or a list of parts", param)
    if "weight" in message:
        if role != "assistant":
            raise _fail(line, "invalid_weight", f"{where}: weight is only allowed on assistant messages", param)
        if message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            raise _fail(line, "invalid_weight", f"{where}: weight must be 0 or 1", param)


def _check_messages(messages: Any, line: int, param: str, *, need_assistant: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail(line, "missing_messages", "'messages' must be a non-empty list", param)
    for index, message in enumerate(messages):
        check_message(message, line, index, param)
    if need_assistant and not any(m.get("role") == "assistant" for m in messages):
        raise _fail(line, "missing_assistant_message", "the example has no assistant message to learn from", param)


def check_example(example: Any, line: int, param: str = "file") -> str:
    """A supervised (`messages`) or preference (`input` + preferred/non-preferred output) example;
    returns which: `chat` or `preference`."""
    if not isinstance(example, dict):
        raise _fail(line, "invalid_example", "each line must be a JSON object", param)
    if "messages" in example:
        _check_messages(example["messages"], line, param, need_assistant=True)
        return "chat"
    if "input" in example:
        source = example["input"]
        if not isinstance(source, dict):
            raise _fail(line, "invalid_input", "'input' must be an object with 'messages'", param)
        _check_messages(source.get("messages"), line, param, need_assistant=False)
        for name in ("preferred_output", "non_preferred_output"):
            output = example.get(name, example.get(name.replace("_output", "_completion")))
            if not isinstance(output, list) or not output:
                raise _fail(line, "missing_preference_output", f"'{name}' must be a non-empty list", param)
            for index, message in enumerate(output):
                check_message(message, line, index, param)
        return "preference"
    raise _fail(line, "missing_messages", "no 'messages' key (chat format: {\"messages\": [...]})", param)


def parse_line(raw: bytes, line: int, param: str = "file") -> Any:
    """One JSONL line as a JSON value, or None for a blank line."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(line, "invalid_encoding", "not valid UTF-8", param) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(line, "invalid_json", f"not valid JSON ({exc.msg} at column {exc.colno})", param) from None


class JsonlChecker:
    """Feeds byte chunks, checks each complete line as it arrives; `close()` returns the example count."""

    def __init__(self, param: str = "file") -> None:
        self.param = param
        self.examples = 0
        self.first_line: dict[str, int] = {}
        """The first line of each kind of example seen (`chat`, `preference`)."""
        self._line = 0
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        start = 0
        while (end := self._pending.find(b"\n", start)) != -1:
            self._check_line(bytes(self._pending[start:end]))
            start = end + 1
        del self._pending[:start]
        if len(self._pending) > MAX_LINE_BYTES:
            raise _fail(self._line + 1, "line_too_long", f"a line is longer than {MAX_LINE_BYTES} bytes", self.param)

    def close(self) -> int:
        if self._pending:
            self._check_line(bytes(self._pending))
            self._pending.clear()
        if self.examples == 0:
            raise InvalidFileError("Invalid file format: the file has no examples", param=self.param, code="empty_file")
        return self.examples

    def _check_line(self, raw: bytes) -> None:
        self._line += 1
        example = parse_line(raw, self._line, self.param)
        if example is None:
            return
        kind = check_example(example, self._line, self.param)
        self.first_line.setdefault(kind, self._line)
        self.examples += 1

    @property
    def saw_chat(self) -> bool:
        return "chat" in self.first_line

    @property
    def saw_preference(self) -> bool:
        return "preference" in self.first_line

    def first_mismatch(self, want_preference: bool) -> int:
        """The first line whose kind is not the one wanted."""
        return self.first_line["chat" if want_preference else "preference"]


def _checked(chunks: Iterable[bytes]) -> tuple[str, str | None, str | None] | None:
    checker = JsonlChecker()
    try:
        for chunk in chunks:
            checker.feed(chunk)
        checker.close()
    except InvalidFileError as exc:
        return exc.message, exc.param, exc.code
    return None


def check_jsonl_file(path: str) -> tuple[str, str | None, str | None] | None:
    """Check a fine-tuning JSONL file on disk: None, or the first fault's (message, param, code).

    Meant for a worker process (see `service.api.files.checks`): plain values cross the boundary.
    """
    with open(path, "rb") as f:
        return _checked(iter(lambda: f.read(1 << 20), b""))


def check_jsonl_object(settings: Settings, key: str) -> tuple[str, str | None, str | None] | None:
    """`check_jsonl_file` for an object in the configured storage."""
    from service.storage import configured_storage

    return _checked(configured_storage(settings).read_chunks(key))
