"""A further rank of a multi-device job: `python -m trainer.rank_main SPEC.json RANK WORLD PORT`.

Started by rank 0 (`trainer.ranks.data_parallel`). It reads the same files and resume state
and runs the same loop on its shard of every step; only rank 0 reports, checkpoints and
stores the adapter, so this one reports nothing and stops when rank 0 does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from service.catalog import BaseModel
from service.settings import Settings
from service.storage import configured_storage
from trainer.job import JobSpec, run_training
from trainer.ranks import join_group


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
    join_group(int(rank), int(world), int(port))
    try:
        run_training(spec, storage, settings, _Silent())
    finally:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
