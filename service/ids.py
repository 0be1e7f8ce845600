"""Object ids in OpenAI's shapes: `file-…`, `upload_…`, `part_…`, `org-…`."""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int = 24) -> str:
    """A base62 token from the system's CSPRNG."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """A new id such as `file-3hT9…` (the prefix carries its own separator)."""
    return prefix + random_token(length)


def new_file_id() -> str:
    return new_id("file-")


def new_upload_id() -> str:
    return new_id("upload_")


def new_part_id() -> str:
    return new_id("part_")


def new_org_id() -> str:
    return new_id("org-")


def now_s() -> int:
    """The current Unix time in whole seconds, as every `created_at` on the wire."""
    return int(time.time())
