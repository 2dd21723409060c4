"""Starting a worker as a child process (the demo, the tests, the benchmark): one process
serving both queues. Production splits them (README "Running GPU workers",
docker/compose.yaml): per GPU `celery -A evalsite worker -Q gpu --pool solo
--concurrency 1 -n gpu0@%h`, and a `-Q cpu` worker for the rest.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def worker_command(name: str = "worker", queues: str = "gpu,cpu", loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "evalsite", "worker",
        "-Q", queues,
        "--pool", "solo",  # one process holds the model; no fork after CUDA init
        "--concurrency", "1",
        "--without-gossip", "--without-mingle",
        "-n", f"{name}@%h",
        "--loglevel", loglevel,
    ]


def start_worker(*, log_path: Path, env: dict | None = None, name: str = "worker") -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    return subprocess.Popen(
        worker_command(name),
        cwd=BASE_DIR,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
