"""OpenAI's grader template language: `{{ sample.output_text }}`, `{{item.answer.text}}`.

A template names a field of one of two namespaces, `sample` (the model's output) and `item`
(the dataset row), by a dotted path; list elements are named by their index (`item.tags.0`).
Strings are substituted as they are, anything else as compact JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from service.graders.errors import GraderConfigError, SampleFailure

NAMESPACES = ("sample", "item")
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_\-]+)*$")


def variables(template: str) -> Iterator[str]:
    for match in _VARIABLE.finditer(template):
        yield match.group(1)


def check_template(template: Any, param: str) -> None:
    """Refuse (400) a template that is not a string or names something outside `sample`/`item`."""
    if not isinstance(template, str):
        raise GraderConfigError(f"`{param}` must be a string.", param=param)
    for path in variables(template):
        if not _PATH.match(path) or path.split(".")[0] not in NAMESPACES:
            raise GraderConfigError(
                f"Invalid template variable `{{{{{path}}}}}` in `{param}`: variables name a field of "
                "`sample` or `item`, as in `{{sample.output_text}}` or `{{item.reference}}`.",
                param=param,
            )


def lookup(path: str, context: dict[str, Any]) -> Any:
    """The value at a dotted path; a missing field is this sample's `invalid_variable_error`."""
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise SampleFailure("invalid_variable_error", f"`{path}` is not a field of this sample or item.")
    return value


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render(template: str, context: dict[str, Any]) -> str:
    return _VARIABLE.sub(lambda m: as_text(lookup(m.group(1), context)), template)


def sample_namespace(output_text: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`sample` as OpenAI fills it: `output_text`, and `output_json` when the text is a JSON object."""
    try:
        parsed = json.loads(output_text)
    except ValueError:
        parsed = None
    sample: dict[str, Any] = {"output_text": output_text, "output_json": parsed if isinstance(parsed, dict) else {}}
    sample.update(extra or {})
    return sample
