"""Metric jobs: computing the scores an experiment's table is missing, on a worker.

Resumable at two grains: a score row, once written, is final (a job run again skips it),
and every image's features are cached on disk as soon as they are computed, so a job killed
half-way through a method redoes only the features it had not stored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, transaction
from django.db.models.functions import Now

from evalsite.dispatch import send_metric_job
from evalsite.models import ACTIVE_JOB_STATUSES, Experiment, ExperimentMethod, JobStatus, MetricJob
from evalsite.selectors import experiment_jobs
from evalsite.services.jobs import Heartbeat, job_claim, job_finish, job_release, new_claim_token
from evalsite.results import scope_of, score_find
from evalsite.services.scoring import extractor_get, feature_cache, score_compute, score_store
from metrics.errors import MetricError
from metrics.protocols import PROTOCOLS

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0


class ClaimLost(Exception):
    pass


@dataclass
class MetricJobReport:
    job_id: int
    status: str
    computed: list[str] = field(default_factory=list)  # "metric method-key"
    reused: int = 0  # scores found already stored
    problems: list[str] = field(default_factory=list)


def metrics_request(*, experiment: Experiment) -> tuple[MetricJob, bool]:
    """Queue the experiment's metric job, or find the one already queued or running;
    (job, whether it was queued now)."""
    with transaction.atomic():
        list(Experiment.objects.select_for_update().filter(pk=experiment.pk))  # one request at a time
        active = experiment.metric_jobs.filter(status__in=ACTIVE_JOB_STATUSES).order_by("id").first()
        if active is not None:
            return active, False
        job = MetricJob.objects.create(experiment=experiment, stage="waiting for a worker")
        send_metric_job(job.pk)
        return job, True


def metrics_request_when_generated(*, method_id: int, dataset_id: int) -> list[int]:
    """After a generation job ends: queue the metrics of every experiment on this method
    whose generation has now ended (whatever failed: the table is scored on the samples
    every method has, and says so)."""
    queued = []
    # Locked before the check, in id order: of two jobs ending at once, the second to take
    # the lock sees the first one's end (and queues the metrics), whichever it is.
    experiments = Experiment.objects.select_for_update().filter(
        pk__in=ExperimentMethod.objects.filter(method_id=method_id).values("experiment_id"),
        dataset_id=dataset_id, cancelled_at__isnull=True,
    ).order_by("pk")
    for experiment in experiments:
        if not experiment.metrics:
            continue
        if experiment_jobs(experiment).filter(status__in=ACTIVE_JOB_STATUSES).exists():
            continue
        queued.append(metrics_request(experiment=experiment)[0].pk)
    return queued


def metric_job_run(*, job_id: int) -> MetricJobReport:
    token = new_claim_token()
    job = job_claim(job_id=job_id, token=token, model=MetricJob)
    if job is None:
        return MetricJobReport(job_id=job_id, status="skipped")
    report = MetricJobReport(job_id=job_id, status="running")
    try:
        with Heartbeat(job_id=job_id, token=token, model=MetricJob) as heartbeat:
            _compute_missing(job, token, heartbeat, report)
    except ClaimLost:
        log.warning("metric job %s: claim lost to another worker; stopped", job_id)
        report.status = "claim-lost"
        return report
    except (OperationalError, InterfaceError):
        try:
            job_release(job_id=job_id, token=token, model=MetricJob)
        except Exception:
            log.warning("metric job %s: could not release it; the sweep will", job_id)
        raise
    except Exception as exc:
        log.exception("metric job %s: unexpected error", job_id)
        report.problems.append(f"unexpected error ({type(exc).__name__}: {exc}); the worker log has the traceback")
    error = "\n".join(report.problems)
    _update(job_id, token, stage="finished with problems" if error else "finished")
    if not job_finish(job_id=job_id, token=token, error=error, model=MetricJob):
        report.status = "claim-lost"
        return report
    report.status = "failed" if error else "succeeded"
    return report


def _compute_missing(job: MetricJob, token: str, heartbeat: Heartbeat, report: MetricJobReport) -> None:
    experiment = Experiment.objects.select_related("dataset").get(pk=job.experiment_id)
    scope = scope_of(experiment)
    metrics = [m for m in experiment.metrics if m in PROTOCOLS]
    # One step per (metric, method identity): keys naming the same method share its score.
    steps = [(metric, column) for metric in metrics for column in _distinct_methods(scope.columns)]
    cache = feature_cache()
    done = 0
    _update(job.pk, token, progress_done=0, progress_total=len(steps), features_computed=0, features_reused=0,
            scores_computed=0, scores_reused=0, stage="scoping")
    for metric in metrics:
        protocol = PROTOCOLS[metric]
        try:
            extractor = extractor_get(protocol.features)
        except MetricError as exc:
            report.problems.append(f"{protocol.label}: {exc}")
            done += len(_distinct_methods(scope.columns))
            continue
        scope_key = scope.key(metric)
        for column in _distinct_methods(scope.columns):
            if heartbeat.lost:
                raise ClaimLost()
            if score_find(method_id=column.method_id, metric=metric, scope_key=scope_key,
                          extractor_sha256=extractor.sha256):
                report.reused += 1
                done += 1
                _update(job.pk, token, progress_done=done, scores_reused=report.reused)
                continue
            stage = f"{protocol.label} of {column.key}"
            last = [0.0]

            def on_progress(features_done, features_total, stage=stage, last=last):
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY_SECONDS:
                    last[0] = now
                    _update(job.pk, token, stage=f"{stage}: features {features_done}/{features_total}",
                            features_computed=cache.computed, features_reused=cache.reused)

            _update(job.pk, token, stage=stage)
            try:
                computed = score_compute(metric=metric, method_id=column.method_id, scope=scope,
                                         extractor=extractor, cache=cache, on_progress=on_progress)
            except MetricError as exc:
                report.problems.append(f"{protocol.label} of {column.key}: {exc}")
            else:
                if not _update(job.pk, token, features_computed=cache.computed, features_reused=cache.reused):
                    raise ClaimLost()  # never store a number for a job that is no longer ours
                score_store(metric=metric, method_id=column.method_id, scope=scope, scope_key=scope_key,
                            extractor=extractor, computed=computed)
                report.computed.append(f"{metric} {column.key}")
            done += 1
            _update(job.pk, token, progress_done=done, scores_computed=len(report.computed))


def _distinct_methods(columns):
    seen, distinct = set(), []
    for column in columns:
        if column.method_id not in seen:
            seen.add(column.method_id)
            distinct.append(column)
    return distinct


def _update(job_id: int, token: str, **fields) -> bool:
    """Write progress while the job is ours (it beats the heartbeat too)."""
    return bool(
        MetricJob.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(heartbeat_at=Now(), **fields)
    )
