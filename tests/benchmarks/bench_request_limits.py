"""What the per-key request limit costs a request: latency with the limit off and on, in one run.

    .venv/bin/python tests/benchmarks/bench_request_limits.py [--requests 1000]

Starts `ftserve up --no-inference --workers 0` (SQLite, local storage, its private Redis) twice
in temporary directories, once with `FTSERVE_KEY_REQUEST_LIMIT=0` (no counting) and once with
the default limit (each request counted in Redis), and times sequential `GET /v1/models` with
one key over one connection. Prints p50 and p99 of each and the ratio of the p50s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import free_port, wait_for_http  # noqa: E402

BIN = Path(sys.executable).parent


def timings(data_dir: Path, limit: str, requests: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL")}
    port = free_port()
    env |= {"FTSERVE_DATA_DIR": str(data_dir), "FTSERVE_PORT": str(port), "FTSERVE_KEY_REQUEST_LIMIT": limit}
    made = subprocess.run(
        [BIN / "ftserve", "keys", "create", "--org", "bench"], env=env, check=True, capture_output=True, text=True
    )
    key = made.stdout.strip().splitlines()[-1]
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(
        [BIN / "ftserve", "up", "--no-inference", "--workers", "0"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {key}"}) as http:
            for _ in range(50):  # warm up: key cache, connection, the process's imports
                http.get("/models").raise_for_status()
            seconds = []
            for _ in range(requests):
                started = time.perf_counter()
                http.get("/models").raise_for_status()
                seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    results = {}
    for name, limit in (("limit off", "0"), ("limit on", "1000000")):
        with tempfile.TemporaryDirectory(prefix="ftserve-bench-") as tmp:
            results[name] = timings(Path(tmp), limit, args.requests)
        print(f"{name}: p50 {pct(results[name], 50):.2f} ms, p99 {pct(results[name], 99):.2f} ms")
    ratio = pct(results["limit on"], 50) / pct(results["limit off"], 50)
    print(f"p50 with the limit / without: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
