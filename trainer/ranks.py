"""One job on several devices: the worker's training thread is rank 0, and it starts the others.

    FTSERVE_TRAINER_DEVICES=N ftserve worker

Rank 0 starts N-1 processes (`python -m trainer.rank_main SPEC.json RANK WORLD PORT`), one per
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
from typing import TYPE_CHECKING

import torch

from service.net import free_port

if TYPE_CHECKING:
    from trainer.job import JobSpec

JOIN_TIMEOUT = datetime.timedelta(minutes=10)


def join_group(rank: int, world: int, port: int) -> None:
    """Join the job's process group as `rank` of `world` (gloo on the CPU, NCCL on GPUs)."""
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
            [sys.executable, "-m", "trainer.rank_main", handle.name, str(rank), str(world), str(port)],
            env={**os.environ, "LOCAL_RANK": str(rank)},
        )
        for rank in range(1, world)
    ]
    try:
        join_group(0, world, port)
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
