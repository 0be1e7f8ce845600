"""One role's settings as an operator reads them: variable, value, what it does (`ftserve config`)."""

from __future__ import annotations

import re

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

SECRET_NAMES = ("key", "password", "secret", "token")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def variable(cls: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field `name` (its first alias, or `FTSERVE_NAME`)."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def shown(name: str, value: object) -> str:
    """The value with secrets hidden: keys entirely, passwords inside URLs."""
    if value is None:
        return "(unset)"
    if any(word in name for word in SECRET_NAMES):
        return "(set)"
    return _URL_PASSWORD.sub(r"\1***@", str(value))


def describe(cls: type[BaseSettings]) -> list[str]:
    """A line per setting of `cls`, read from the environment: `VARIABLE=value  description`.

    Example:
        >>> from service.settings import InferenceSettings
        >>> any(line.startswith("FTSERVE_INFERENCE_MAX_LORAS=") for line in describe(InferenceSettings))
        True
    """
    current = cls()
    lines = []
    for name, field in cls.model_fields.items():
        summary = (field.description or "").strip().split("\n")[0]
        lines.append(f"{variable(cls, name)}={shown(name, getattr(current, name))}  # {summary}")
    return lines
