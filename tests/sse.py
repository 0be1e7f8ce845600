"""A small server-sent events reader for the tests (frames as dicts of their fields)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx


def frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Each frame of an SSE response: `id`, `event`, `data`, and `comment` for a comment line."""
    frame: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")
