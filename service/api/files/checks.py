"""Fine-tuning JSONL checks in worker processes, apart from the event loop and its threads.

Checking is pure Python and CPU-bound: in a thread it would hold the GIL the event loop needs,
and a 512 MB upload would slow every other request of the process (chat completions included).
A small process pool does it instead; the loop only awaits the verdict.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from service.datasets import check_jsonl_file, check_jsonl_object
from service.errors import InvalidFileError, ServiceUnavailableError
from service.settings import Settings


class JsonlChecks:
    """The API process's checking pool, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running an event loop and threads is not safe.
            self._pool = ProcessPoolExecutor(
                max_workers=max(1, self.settings.jsonl_check_processes), mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def _run(self, fn: Any, *args: Any) -> None:
        try:
            fault = await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            self._pool = None  # a checker died (killed, out of memory): the next call starts afresh
            raise ServiceUnavailableError("The file could not be checked; retry shortly.") from None
        if fault is not None:
            message, param, code = fault
            raise InvalidFileError(message, param=param, code=code)

    async def check_file(self, path: Path) -> None:
        """Raises `InvalidFileError` naming the first bad line of the local file."""
        await self._run(check_jsonl_file, str(path))

    async def check_object(self, key: str) -> None:
        """The same for an object in the configured storage."""
        await self._run(check_jsonl_object, self.settings, key)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
