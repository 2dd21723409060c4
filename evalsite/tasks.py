"""Celery task shims: take ids, call one service. Names are stable; never rename them."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from evalsite.services import generation, jobs

GPU_QUEUE = "gpu"  # settings.CELERY_TASK_ROUTES sends generate_job here


@shared_task(
    name="evalsite.generate_job",
    acks_late=True,
    # Only transient infrastructure errors are retried; everything a person must fix is
    # recorded on the job row by the service instead.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=5,
)
def generate_job(job_id: int) -> dict:
    report = generation.job_run(job_id=job_id)
    return {"job": report.job_id, "status": report.status, "generated": report.generated}


@shared_task(name="evalsite.sweep_stale_jobs")
def sweep_stale_jobs() -> list[int]:
    return jobs.jobs_recover()
