"""Celery task shims: take ids, call one service. Names come from evalsite.queues and are
stable; never rename them."""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from evalsite.models import FineTune, GenerationJob, MetricJob
from evalsite.queues import COMPUTE_METRICS_JOB, FINE_TUNE_JOB, GENERATE_JOB, SWEEP_STALE_JOBS
from evalsite.services import fine_tuning, generation, jobs, metric_jobs

TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 5


@shared_task(name=GENERATE_JOB, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def generate_job(self, job_id: int) -> dict:
    report = _run_retrying(self, job_id, GenerationJob, generation.job_run)
    return {"job": report.job_id, "status": report.status, "generated": report.generated}


@shared_task(name=FINE_TUNE_JOB, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def fine_tune_job(self, job_id: int) -> dict:
    report = _run_retrying(self, job_id, FineTune, fine_tuning.fine_tune_run)
    return {"job": report.job_id, "status": report.status, "steps": report.steps, "resumed_from": report.resumed_from}


@shared_task(name=COMPUTE_METRICS_JOB, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def compute_metrics_job(self, job_id: int) -> dict:
    report = _run_retrying(self, job_id, MetricJob, metric_jobs.metric_job_run)
    return {"job": report.job_id, "status": report.status, "computed": report.computed}


@shared_task(name=SWEEP_STALE_JOBS)
def sweep_stale_jobs() -> list[int]:
    return jobs.jobs_recover()


def _run_retrying(task, job_id: int, model, run):
    """Only transient infrastructure errors are retried; everything a person must fix is
    recorded on the job row by the service instead."""
    try:
        return run(job_id=job_id)
    except TRANSIENT_ERRORS as exc:
        if task.request.retries >= task.max_retries:
            try:
                message = jobs.transient_gave_up_message(exc, task.request.retries, model)
                jobs.job_fail_queued(job_id=job_id, message=message, model=model)
            except TRANSIENT_ERRORS:
                pass  # the database is still away; the sweep re-sends the queued job later
            raise
        raise task.retry(exc=exc, countdown=min(5 * 2**task.request.retries, 300))
