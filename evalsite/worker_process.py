"""Child processes: worker command lines, the plan for this machine (one process per GPU on
the gpu queue plus a cpu worker, or one combined worker on a CPU-only machine), starting a
worker (the demo, the tests, the benchmark) and the demo's site."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evalsite.queues import CPU_QUEUE, GPU_QUEUE

BASE_DIR = Path(__file__).resolve().parent.parent


def worker_command(name: str = "worker", queues: str = f"{GPU_QUEUE},{CPU_QUEUE}", loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "evalsite", "worker",
        "-Q", queues,
        "--pool", "solo",  # one process holds the model; no fork after CUDA init
        "--concurrency", "1",
        "--without-gossip", "--without-mingle",
        "-n", f"{name}@%h",
        "--loglevel", loglevel,
    ]


def manage_py_command(*args: str) -> str:
    """How a person runs a manage.py command here: with this interpreter, shown relative to
    the project when it lives in it (the venv's python)."""
    python = Path(sys.executable)
    try:
        shown = f"{python.relative_to(BASE_DIR)}"
    except ValueError:
        shown = str(python)
    return " ".join([shown, "manage.py", *args])


@dataclass
class PlannedWorker:
    name: str
    queues: str
    env: dict = field(default_factory=dict)

    def command(self, loglevel: str = "INFO") -> list[str]:
        return worker_command(self.name, self.queues, loglevel)


def plan_workers(gpus: list[int]) -> list[PlannedWorker]:
    """One process per GPU (each sees only its own device) and one for the cpu queue; on a
    machine without GPUs, one process for both queues."""
    if not gpus:
        return [PlannedWorker("worker", f"{GPU_QUEUE},{CPU_QUEUE}")]
    planned = [PlannedWorker(f"gpu{i}", GPU_QUEUE, {"CUDA_VISIBLE_DEVICES": str(i)}) for i in gpus]
    return planned + [PlannedWorker("cpu", CPU_QUEUE, {"CUDA_VISIBLE_DEVICES": ""})]


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


def start_site(*, port: int) -> subprocess.Popen:
    """The development server as a child process (the demo). --insecure: it serves the
    static files although DEBUG is off (the default)."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
        cwd=BASE_DIR,
        env=dict(os.environ),
    )


def spawn_planned(worker: PlannedWorker, loglevel: str = "INFO") -> subprocess.Popen:
    """A planned worker as a child that shares this terminal."""
    return subprocess.Popen(worker.command(loglevel), cwd=BASE_DIR, env={**os.environ, **worker.env})
