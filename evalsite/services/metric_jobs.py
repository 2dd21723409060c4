"""Metric jobs: computing the scores an experiment's table is missing, on a worker.

Resumable at two grains: a score row, once written, is final (a job run again skips it),
and every image's features are cached on disk as soon as they are computed, so a job killed
half-way through a method redoes only the features it had not stored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError
from django.db.models.functions import Now

from evalsite.models import Experiment, JobStatus, MetricJob, Output
from evalsite.results import scope_of, score_find
from evalsite.services.jobs import Heartbeat, job_claim, job_finish, job_release, new_claim_token
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
    if not scope.samples:
        report.problems.append(_empty_scope_message(scope))
        return
    cache = feature_cache()
    done = 0
    # One step per (metric, method identity): keys naming the same method share its score.
    _update(job.pk, token, progress_done=0, progress_total=len(metrics) * len(_distinct_methods(scope.columns)), features_computed=0, features_reused=0,
            scores_computed=0, scores_reused=0, stage="scoping")
    for metric in metrics:
        protocol = PROTOCOLS[metric]
        try:
            extractor = extractor_get(protocol.features)
        except MetricError as exc:
            report.problems.append(f"{protocol.label}: {exc}")
            done += len(_distinct_methods(scope.columns))
            _update(job.pk, token, progress_done=done)
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


def _empty_scope_message(scope) -> str:
    without = [
        c.key for c in scope.columns
        if not Output.objects.filter(method_id=c.method_id, seed__in=scope.seeds,
                                     sample__dataset_id=scope.experiment.dataset_id).exists()
    ]
    if without:
        return (f"nothing to score: method(s) {', '.join(without)} have no output yet (see their generation jobs' "
                f"messages); the table scores every method on the samples all of them have")
    return ("nothing to score: no sample has an output for every method and seed (see the generation jobs' "
            "messages); the table scores every method on the samples all of them have")


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
