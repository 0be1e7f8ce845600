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


QA = [(f"What is the code of item {i}?", f"Item {i} has code {chr(65 + i)}{i * 7 % 10}.") for i in range(20)]
"""Twenty question/answer pairs a LoRA adapter on tiny-chat learns by heart in a few hundred steps."""


def qa_jsonl(pairs: list[tuple[str, str]] = QA) -> bytes:
    return "".join(
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
        for q, a in pairs
    ).encode()


FINAL = ("succeeded", "failed", "cancelled")


def wait_for_job(client, job_id: str, statuses=FINAL, timeout_s: float = 180.0):  # type: ignore[no-untyped-def]
    """Poll until the job reaches one of `statuses`; returns the job."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.status} after {timeout_s}s")
        time.sleep(0.2)


def wait_for_event(client, job_id: str, predicate, timeout_s: float = 120.0):  # type: ignore[no-untyped-def]
    """Poll the job's events until one satisfies `predicate`; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in client.fine_tuning.jobs.list_events(job_id, limit=100).data:
            if predicate(event):
                return event
        time.sleep(0.1)
    raise TimeoutError(f"no matching event on {job_id} within {timeout_s}s")


def all_events(client, job_id: str) -> list:  # type: ignore[no-untyped-def]
    """Every event of the job, oldest first (the API pages newest first)."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=50))))


class MetricsRecorder:
    """Training callbacks that keep every metrics report and never ask the trainer to stop."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.metrics.append(metrics)

    def on_epoch_end(self, *args: object) -> None:
        pass

    def should_stop(self, step: int) -> None:
        return None

    def on_stop(self, *args: object) -> None:
        pass
