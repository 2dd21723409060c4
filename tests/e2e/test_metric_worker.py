"""Metric jobs on a real worker: started by the end of generation, killed mid-way and
finished by another worker computing only what was missing, then `compute_metrics --wait`
reusing everything."""
import io

import pytest
from django.core.management import call_command

from evalsite import selectors
from evalsite.models import ACTIVE_JOB_STATUSES, JobStatus, MetricJob, Score
from tests.e2e.test_worker_pipeline import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ALL_METRICS = ("clip_score", "fid", "kid", "fid_clip")


def feature_files(media_root):
    return {p: p.stat().st_mtime_ns for p in (media_root / "metrics" / "features").rglob("*.npy")}


def test_a_metric_job_killed_mid_way_recomputes_only_what_is_missing(make_experiment, media_root, start_worker):
    experiment = make_experiment(name="metrics-kill", seeds=(0, 1, 2, 3), metrics=ALL_METRICS)
    fast_recovery = dict(EVALSITE_HEARTBEAT_SECONDS=0.5, EVALSITE_STALE_SECONDS=3, EVALSITE_SWEEP_SECONDS=1)
    first = start_worker("first", **fast_recovery)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 240, "generation", first)
    total = 2 * len(ALL_METRICS)

    def mid_job():
        job = MetricJob.objects.filter(experiment=experiment).first()  # queued by the end of generation
        return job is not None and job.status == JobStatus.RUNNING and Score.objects.exists()

    wait_until(mid_job, 120, "the first score", first)
    first.kill()
    scores_at_kill = {s.pk: s.value for s in Score.objects.all()}
    features_at_kill = feature_files(media_root)
    assert 0 < len(scores_at_kill) < total, "the metric job finished before the kill; give it more work"
    job = MetricJob.objects.get(experiment=experiment)
    assert job.status == JobStatus.RUNNING

    second = start_worker("second", **fast_recovery)
    wait_until(lambda: MetricJob.objects.get(pk=job.pk).status not in ACTIVE_JOB_STATUSES, 180, "recovery", second)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2, job.error
    assert Score.objects.count() == total
    assert {s.pk: s.value for s in Score.objects.filter(pk__in=scores_at_kill)} == scores_at_kill  # kept, not redone
    assert (job.scores_reused, job.scores_computed) == (len(scores_at_kill), total - len(scores_at_kill))
    features_now = feature_files(media_root)
    assert job.features_computed == len(features_now) - len(features_at_kill)  # only the missing ones
    assert {p: features_now[p] for p in features_at_kill} == features_at_kill  # none rewritten

    # Asked again, nothing is recomputed, and the table comes out.
    out = io.StringIO()
    call_command("compute_metrics", experiment.name, wait=True, timeout=120, stdout=out, verbosity=0)
    again = MetricJob.objects.filter(experiment=experiment).latest("id")
    assert again.pk != job.pk and (again.scores_reused, again.scores_computed, again.features_computed) == (total, 0, 0)
    text = out.getvalue()
    assert "CLIP score" in text and "FID" in text and "demo features: not comparable to published numbers" in text
