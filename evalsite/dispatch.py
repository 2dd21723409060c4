"""Sending work to the workers, by the tasks' stable names: services import this module,
never evalsite.tasks (which imports the services)."""
from __future__ import annotations

from django.db import transaction

from evalsite.queues import COMPUTE_METRICS_JOB, CPU_QUEUE, FINE_TUNE_JOB, GENERATE_JOB, GPU_QUEUE


def send_generation_job(job_id: int) -> None:
    """Send the job once the current transaction commits (a worker must find its row)."""
    transaction.on_commit(lambda: _send(GENERATE_JOB, job_id, queue=GPU_QUEUE))


def send_fine_tune_job(job_id: int) -> None:
    transaction.on_commit(lambda: _send(FINE_TUNE_JOB, job_id, queue=GPU_QUEUE))


def send_metric_job(job_id: int) -> None:
    transaction.on_commit(lambda: _send(COMPUTE_METRICS_JOB, job_id, queue=CPU_QUEUE))


def _send(task_name: str, *args, queue: str) -> None:
    from evalsite.celery import app

    app.send_task(task_name, args=list(args), queue=queue)
