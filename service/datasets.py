"""Line-by-line checks of fine-tuning JSONL, usable on a stream of byte chunks.

The API runs these checks at upload so that a malformed file is refused at once. A line passes
upload in any shape some method trains on (chat with an assistant turn, a preference pair, an
RFT prompt): the method is known only when a job is created, so whether every line suits it is
checked in the job's `validating_files` step (`JsonlChecker.check_method`), as OpenAI does; the
trainer runs the same checks again before training. Each problem raises `InvalidFileError` with
a `code` and a message that names the line.

    >>> check = JsonlChecker()
    >>> check.feed(b'{"messages": [{"role": "user", "content": "hi"},')
    >>> check.feed(b' {"role": "assistant", "content": "hello"}]}\\n')
    >>> check.close()
    1
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
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


def _check_messages(messages: Any, line: int, param: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise _fail(line, "missing_messages", "'messages' must be a non-empty list", param)
    for index, message in enumerate(messages):
        check_message(message, line, index, param)


SHAPES = ("chat", "prompt", "preference")
"""What a line can teach: `chat` (an assistant turn to learn, supervised), `prompt` (messages
ending before the assistant's turn, reinforcement), `preference` (a pair, DPO). One `messages`
line may be both `chat` and `prompt` (an assistant turn, then a last user turn)."""


def example_shapes(example: dict[str, Any]) -> frozenset[str]:
    """The shapes of an already checked example.

    Example:
        >>> sorted(example_shapes({"messages": [{"role": "user", "content": "q"}]}))
        ['prompt']
    """
    if "messages" not in example:
        return frozenset({"preference"})
    roles = [m.get("role") for m in example["messages"]]
    shapes = set()
    if "assistant" in roles:
        shapes.add("chat")
    if roles[-1] != "assistant":
        shapes.add("prompt")
    return frozenset(shapes)


def check_example(example: Any, line: int, param: str = "file") -> frozenset[str]:
    """A chat (`messages`) or preference (`input` + preferred/non-preferred output) example, in any
    shape some method accepts; returns its shapes (`example_shapes`). Whether the shape suits the
    job's method is `check_shape`'s question, asked once the method is known."""
    if not isinstance(example, dict):
        raise _fail(line, "invalid_example", "each line must be a JSON object", param)
    if "messages" in example:
        _check_messages(example["messages"], line, param)
        return example_shapes(example)
    if "input" in example:
        source = example["input"]
        if not isinstance(source, dict):
            raise _fail(line, "invalid_input", "'input' must be an object with 'messages'", param)
        _check_messages(source.get("messages"), line, param)
        for name in ("preferred_output", "non_preferred_output"):
            output = example.get(name, example.get(name.replace("_output", "_completion")))
            if not isinstance(output, list) or not output:
                raise _fail(line, "missing_preference_output", f"'{name}' must be a non-empty list", param)
            for index, message in enumerate(output):
                check_message(message, line, index, param)
        return frozenset({"preference"})
    raise _fail(line, "missing_messages", "no 'messages' key (chat format: {\"messages\": [...]})", param)


METHOD_SHAPES = {"supervised": "chat", "dpo": "preference", "reinforcement": "prompt"}


def check_shape(shapes: frozenset[str], line: int, param: str, method: str) -> None:
    """Refuse a line whose shape the job's method cannot train on, naming the line."""
    wanted = METHOD_SHAPES.get(method, "chat")
    if wanted in shapes:
        return
    if wanted == "chat" and "prompt" in shapes:
        raise _fail(line, "missing_assistant_message", "the example has no assistant message to learn from", param)
    if wanted == "prompt" and "chat" in shapes:
        raise _fail(line, "invalid_example_format", "a reinforcement job needs prompts whose last message is not "
                    "the assistant's: the model writes that turn itself", param)  # fmt: skip
    expected = {"preference": "preference pairs (input, preferred_output, non_preferred_output)",
                "chat": "chat", "prompt": "prompt (messages)"}[wanted]  # fmt: skip
    raise _fail(line, "invalid_example_format", f"a {method} job needs {expected} examples on every line", param)


def grader_item_fields(grader: Any) -> list[str]:
    """The `item.…` paths a grader's templates name (sorted, each once); a python grader's own
    reads of `item` cannot be known before it runs and are not listed.

    Example:
        >>> grader_item_fields({"type": "string_check", "input": "{{sample.output_text}}",
        ...                     "reference": "{{ item.answer }}", "operation": "eq"})
        ['item.answer']
    """
    from service.graders.template import variables

    texts: list[str] = []

    def collect(node: Any) -> None:
        if not isinstance(node, dict):
            return
        for name in ("input", "reference"):
            value = node.get(name)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):  # model graders' messages
                for message in value:
                    content = message.get("content") if isinstance(message, dict) else None
                    parts = content if isinstance(content, list) else [content]
                    texts.extend(p if isinstance(p, str) else str((p or {}).get("text", "")) for p in parts)
        graders = node.get("graders")
        if isinstance(graders, dict):
            for sub in [graders] if "type" in graders else list(graders.values()):
                collect(sub)

    collect(grader)
    return sorted({path for text in texts for path in variables(text) if path.split(".")[0] == "item"})


def check_item_fields(example: dict[str, Any], paths: list[str], line: int, param: str) -> None:
    """Every `item.…` path a grader names exists on this line, else the first missing one fails."""
    from service.graders.errors import SampleFailure
    from service.graders.template import lookup

    for path in paths:
        try:
            lookup(path, {"item": example})
        except SampleFailure:
            raise _fail(line, "missing_grader_field", f"the grader reads `{{{{{path}}}}}`, which this line lacks "
                        f"(field `{path.removeprefix('item.')}`)", param) from None  # fmt: skip


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

    def __init__(self, param: str = "file", inspect: Callable[[dict[str, Any], int], None] | None = None) -> None:
        self.param = param
        self.examples = 0
        self.first_without: dict[str, tuple[int, frozenset[str]]] = {}
        """Per shape (`SHAPES`), the first line that lacks it, and that line's own shapes."""
        self.inspect = inspect
        """Called with each valid example and its line (a job's own checks, such as a grader's fields)."""
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
        shapes = check_example(example, self._line, self.param)
        for shape in SHAPES:
            if shape not in shapes:
                self.first_without.setdefault(shape, (self._line, shapes))
        if self.inspect is not None:
            self.inspect(example, self._line)
        self.examples += 1

    def check_method(self, method: str) -> None:
        """Every line so far suits `method`, or the first that does not fails, naming its line."""
        found = self.first_without.get(METHOD_SHAPES.get(method, "chat"))
        if found is not None:
            check_shape(found[1], found[0], self.param, method)


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
