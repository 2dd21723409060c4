"""Celery task shims: take ids, call one service. Names come from evalsite.queues and are
stable; never rename them."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from evalsite.models import MetricJob
from evalsite.queues import COMPUTE_METRICS_JOB, GENERATE_JOB, SWEEP_STALE_JOBS
from evalsite.services import generation, jobs, metric_jobs

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 5


@shared_task(name=GENERATE_JOB, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def generate_job(self, job_id: int) -> dict:
    # Only transient infrastructure errors are retried; everything a person must fix is
    # recorded on the job row by the service instead.
    try:
        report = generation.job_run(job_id=job_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            try:
                jobs.job_fail_queued(job_id=job_id, message=jobs.transient_gave_up_message(exc, self.request.retries))
            except TRANSIENT_ERRORS:
                pass  # the database is still away; the sweep re-sends the queued job later
            raise
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 300))
    return {"job": report.job_id, "status": report.status, "generated": report.generated}


@shared_task(name=COMPUTE_METRICS_JOB, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def compute_metrics_job(self, job_id: int) -> dict:
    try:
        report = metric_jobs.metric_job_run(job_id=job_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            try:
                jobs.job_fail_queued(job_id=job_id, message=jobs.transient_gave_up_message(exc, self.request.retries, MetricJob),
                                     model=MetricJob)
            except TRANSIENT_ERRORS:
                pass
            raise
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 300))
    return {"job": report.job_id, "status": report.status, "computed": report.computed}


@shared_task(name=SWEEP_STALE_JOBS)
def sweep_stale_jobs() -> list[int]:
    return jobs.jobs_recover()
