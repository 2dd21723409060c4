"""Start the right workers for this machine and keep them running."""
import signal
import subprocess
import time

from django.core.management.base import BaseCommand, CommandError

from evalsite.worker_process import plan_workers, spawn_planned

RESTART_DELAY_SECONDS = 5
MAX_QUICK_EXITS = 5  # a worker that dies this many times within a minute of its start is broken
QUICK_EXIT_SECONDS = 60


class Command(BaseCommand):
    help = ("Start Celery workers for this machine: one process per GPU on the gpu queue and one on the "
            "cpu queue, or one process for both on a machine without GPUs. Ctrl-C stops them.")

    def add_arguments(self, parser):
        parser.add_argument("--gpus", default="auto",
                            help="'auto' (every GPU torch sees), 'none' (one combined worker), or indices like 0,1")
        parser.add_argument("--loglevel", default="INFO")
        parser.add_argument("--dry-run", action="store_true", help="Print the commands and exit")

    def handle(self, *args, gpus, loglevel, dry_run, **options):
        planned = plan_workers(_gpu_indices(gpus))
        for worker in planned:
            env = " ".join(f"{k}={v}" for k, v in worker.env.items())
            self.stdout.write(f"{env + ' ' if env else ''}{' '.join(worker.command(loglevel))}")
        if dry_run:
            return
        self._supervise(planned, loglevel)

    def _supervise(self, planned, loglevel):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        running = {w.name: (w, self._start(w, loglevel), time.monotonic()) for w in planned}
        quick_exits = {w.name: 0 for w in planned}
        try:
            while not stopping:
                time.sleep(0.5)
                for name, (worker, process, began) in list(running.items()):
                    code = process.poll()
                    if code is None or stopping:
                        continue
                    quick_exits[name] = quick_exits[name] + 1 if time.monotonic() - began < QUICK_EXIT_SECONDS else 0
                    if quick_exits[name] >= MAX_QUICK_EXITS:
                        raise CommandError(
                            f"worker {name} exited {MAX_QUICK_EXITS} times right after starting (last exit code "
                            f"{code}); see its output above"
                        )
                    self.stderr.write(self.style.WARNING(
                        f"worker {name} exited with code {code}; restarting in {RESTART_DELAY_SECONDS} s"
                    ))
                    time.sleep(RESTART_DELAY_SECONDS)
                    running[name] = (worker, self._start(worker, loglevel), time.monotonic())
        finally:
            for _, process, _ in running.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)  # warm shutdown: the job in hand finishes
            for name, (_, process, _) in running.items():
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"worker {name} did not stop in 60 s; killing it (its job is re-queued)")
                    process.kill()

    def _start(self, worker, loglevel) -> subprocess.Popen:
        return spawn_planned(worker, loglevel)


def _gpu_indices(value: str) -> list[int]:
    if value == "none":
        return []
    if value == "auto":
        import torch

        return list(range(torch.cuda.device_count()))
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--gpus {value!r}: expected 'auto', 'none' or indices like 0,1") from None
