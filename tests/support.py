"""Helpers the tests share: free ports, waiting for servers, training data."""

from __future__ import annotations

import json
import socket
import time
import urllib.request


def free_port() -> int:
    """A port free now on 127.0.0.1 (and, for SeaweedFS's gRPC, port + 10000 too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait_for_http(url: str, timeout_s: float = 60.0, proc=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def chat_example(i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You answer with the number's name."},
            {"role": "user", "content": f"What is {i}?"},
            {"role": "assistant", "content": f"It is number {i}."},
        ]
    }


def chat_jsonl(n: int, start: int = 0) -> bytes:
    return "".join(json.dumps(chat_example(i)) + "\n" for i in range(start, start + n)).encode()
