"""What a command does while it waits on jobs: the recovery sweep now and then (the jobs
of a dead worker are queued again even when no worker sweeps), and one warning when no
worker is running."""
from __future__ import annotations

import sys
import time

from django.conf import settings

from evalsite.services.jobs import jobs_recover
from evalsite.services.workers import any_worker_alive
from evalsite.worker_process import manage_py_command


class WorkerWatch:
    def __init__(self, style):
        self.style = style
        self.started = time.monotonic()
        self._next_check = self.started
        # A worker started a moment ago (the demo's) reports once it is up: no verdict
        # before the window in which a live worker must have reported.
        self._verdict_from = self.started + 3 * settings.EVALSITE_HEARTBEAT_SECONDS
        self._warned = False

    def tick(self, bar, what: str = "jobs") -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + settings.EVALSITE_HEARTBEAT_SECONDS
        jobs_recover()
        alive = now < self._verdict_from or any_worker_alive()
        if not alive and not self._warned:
            bar.write(self.style.WARNING(
                f"no worker is running (none reported in the last "
                f"{3 * settings.EVALSITE_HEARTBEAT_SECONDS:.0f} s, none answered a ping); the {what} wait "
                f"in the queue. Start one in another terminal with:\n    {manage_py_command('worker')}"
                f"\n  (or: make worker)"
            ), file=sys.stderr)
        self._warned = not alive

    def waited(self) -> float:
        return time.monotonic() - self.started
