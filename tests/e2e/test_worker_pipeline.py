"""Real worker processes, the real broker (Redis in CI, the embedded filesystem broker
otherwise) and the real database, from import to images on disk."""
import time

import pytest
from django.db import connection
from PIL import Image

from evalsite import selectors
from evalsite.models import GenerationJob, JobStatus, Output
from evalsite.services.experiments import experiment_enqueue
from evalsite.services.storage import PARTIAL_SUFFIX

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout, what, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection.close()  # see other processes' commits with a fresh connection
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nworker log:\n{worker.log()}" if worker else ""))


def assert_outputs_complete(experiment, media_root):
    expected = selectors.experiment_progress(experiment).expected
    outputs = list(Output.objects.filter(method__experiment=experiment))
    assert len(outputs) == expected
    assert len({(o.method_id, o.sample_id, o.seed) for o in outputs}) == expected
    for output in outputs:
        with Image.open(media_root / output.image.name) as image:
            image.verify()  # a truncated or corrupt PNG raises here
    on_disk = sorted(p for p in (media_root / "outputs").rglob("*") if p.is_file())
    assert not [p for p in on_disk if p.name.endswith(PARTIAL_SUFFIX)]
    assert sorted(media_root / o.image.name for o in outputs) == on_disk


def test_import_to_outputs_through_a_real_worker(make_experiment, media_root, start_worker):
    experiment = make_experiment(seeds=(0, 1), batch_size=3)
    worker = start_worker()
    experiment_enqueue(experiment=experiment)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 180, "the experiment", worker)
    assert set(experiment.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    assert Output.objects.filter(method__experiment=experiment).count() == 2 * 2 * 6


def test_sigkill_mid_job_then_a_new_worker_finishes_everything_exactly_once(make_experiment, media_root, start_worker):
    # Enough work that the kill lands in the middle: 2 methods x 3 seeds x 6 samples.
    experiment = make_experiment(name="kill", seeds=(0, 1, 2), batch_size=2, steps=8, resolution=128)
    fast_recovery = dict(EVALSITE_HEARTBEAT_SECONDS=0.5, EVALSITE_STALE_SECONDS=3, EVALSITE_SWEEP_SECONDS=1)
    first = start_worker("first", **fast_recovery)
    experiment_enqueue(experiment=experiment)
    total = selectors.experiment_progress(experiment).expected

    def mid_job():
        outputs = Output.objects.filter(method__experiment=experiment, method__key="pbe_tiny").count()
        return outputs >= 2 and GenerationJob.objects.filter(experiment=experiment, status=JobStatus.RUNNING).exists()

    wait_until(mid_job, 180, "the first outputs", first)
    first.kill()
    done_at_kill = Output.objects.filter(method__experiment=experiment).count()
    assert done_at_kill < total, "the experiment finished before the kill; give it more work"
    assert GenerationJob.objects.filter(experiment=experiment, status=JobStatus.RUNNING).exists()

    second = start_worker("second", **fast_recovery)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 240, "recovery", second)
    assert set(experiment.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    retried = GenerationJob.objects.filter(experiment=experiment, attempts__gte=2)
    assert retried.exists()  # the sweep handed the killed job to the new worker


def test_evaluate_waits_reports_failures_and_fills_gaps_on_rerun(demo_dataset, weights_dir, media_root, start_worker, tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    experiment_file = tmp_path / "exp.toml"
    text = """
name = "cli"
dataset = "demo"
seeds = [0]
num_inference_steps = 2
resolution = 64
batch_size = 6
[[methods]]
key = "copy_paste"
family = "copy_paste"
[[methods]]
key = "pbe"
family = "pbe"
checkpoint = "{checkpoint}"
"""
    experiment_file.write_text(text.format(checkpoint="not-there-yet"))
    start_worker()
    with pytest.raises(CommandError, match="1 job\\(s\\) failed"):
        call_command("evaluate", str(experiment_file), wait=True, timeout=120)
    assert Output.objects.filter(method__key="copy_paste").count() == 6
    failed = GenerationJob.objects.get(method__key="pbe")
    assert failed.status == JobStatus.FAILED and "not-there-yet" in failed.error

    # Put the checkpoint where the file says and run the same command: only the gap is filled.
    (weights_dir / "not-there-yet").symlink_to(weights_dir / "tiny" / "pbe")
    copy_paste_files = {o.pk: o.created_at for o in Output.objects.filter(method__key="copy_paste")}
    call_command("evaluate", str(experiment_file), wait=True, timeout=120)
    assert Output.objects.filter(method__key="pbe").count() == 6
    assert {o.pk: o.created_at for o in Output.objects.filter(method__key="copy_paste")} == copy_paste_files

    experiment_file.write_text(text.format(checkpoint="not-there-yet").replace("seeds = [0]", "seeds = [1]"))
    with pytest.raises(CommandError, match="already exists with a different configuration"):
        call_command("evaluate", str(experiment_file))
    experiment_file.write_text(text.format(checkpoint="x").replace('dataset = "demo"', 'dataset = "nope"'))
    with pytest.raises(CommandError, match="dataset 'nope' is not imported"):
        call_command("evaluate", str(experiment_file))
