"""One job on several devices: the worker's training thread is rank 0, and it starts the others.

    FTSERVE_TRAINER_DEVICES=N ftserve worker

Rank 0 starts N-1 processes (`python -m trainer.ranks SPEC.json RANK WORLD PORT`), one per
further device (`LOCAL_RANK` picks the GPU; gloo on the CPU, NCCL on GPUs). Each reads the
same files and resume state and runs the same loop on its shard of every step; only rank 0
reports, checkpoints and stores the adapter (see `trainer.loop.Ranks`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from service.catalog import BaseModel
from service.embedded import free_port
from service.settings import Settings
from service.storage import configured_storage
from trainer.job import JobSpec, run_training

JOIN_TIMEOUT = datetime.timedelta(minutes=10)


def _init(rank: int, world: int, port: int) -> None:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=JOIN_TIMEOUT
    )


@contextmanager
def data_parallel(spec: JobSpec, world: int) -> Iterator[None]:
    """Rank 0's side: start ranks 1..world-1, join them in one process group, clean up after."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(dataclasses.asdict(spec), handle)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "trainer.ranks", handle.name, str(rank), str(world), str(port)],
            env={**os.environ, "LOCAL_RANK": str(rank)},
        )
        for rank in range(1, world)
    ]
    try:
        _init(0, world, port)
        yield
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        Path(handle.name).unlink(missing_ok=True)


class _Silent:
    """Ranks other than 0 report nothing; they stop when rank 0 does."""

    def event(self, *args: Any, **kwargs: Any) -> None: ...
    def progress(self, *args: Any) -> None: ...
    def checkpoint(self, *args: Any) -> None: ...
    def control(self) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    spec_file, rank, world, port = (argv or sys.argv[1:])[:4]
    raw = json.loads(Path(spec_file).read_text())
    raw["base"] = BaseModel(**{**raw["base"], "aliases": tuple(raw["base"]["aliases"])})
    spec = JobSpec(**raw)
    settings = Settings()
    storage = configured_storage(settings)
    _init(int(rank), int(world), int(port))
    try:
        run_training(spec, storage, settings, _Silent())
    finally:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
