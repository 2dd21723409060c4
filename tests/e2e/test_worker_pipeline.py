"""Real worker processes, the real broker (Redis in CI, the embedded filesystem broker
otherwise) and the real database, from import to images on disk."""
import time

import pytest
from django.db import connection
from PIL import Image

from evalsite import selectors
from evalsite.models import GenerationJob, JobStatus, Output
from evalsite.services.storage import PARTIAL_SUFFIX
from tests.conftest import jobs_of, outputs_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout, what, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection.close()  # see other processes' commits with a fresh connection
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nworker log:\n{worker.log()}" if worker else ""))


def assert_outputs_complete(experiment, media_root, of_all=True):
    """Every image of the experiment once, complete; with of_all, nothing else on disk."""
    expected = selectors.experiment_progress(experiment).expected
    outputs = list(outputs_of(experiment))
    assert len(outputs) == expected
    assert len({(o.method_id, o.sample_id, o.seed) for o in outputs}) == expected
    for output in outputs:
        with Image.open(media_root / output.image.name) as image:
            image.verify()  # a truncated or corrupt PNG raises here
    on_disk = sorted(p for p in (media_root / "outputs").rglob("*") if p.is_file())
    assert not [p for p in on_disk if p.name.endswith(PARTIAL_SUFFIX)]
    if of_all:
        assert sorted(media_root / o.image.name for o in outputs) == on_disk


def test_import_to_outputs_through_a_real_worker(make_experiment, media_root, start_worker):
    from evalsite.models import Worker

    experiment = make_experiment(seeds=(0, 1), batch_size=3)  # its jobs are sent on commit
    worker = start_worker()
    # It reports itself alive (what `evaluate --wait` checks).
    wait_until(lambda: Worker.objects.filter(name__startswith="test@", queues="cpu,gpu").exists(), 30,
               "the worker's report", worker)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 180, "the experiment", worker)
    assert set(jobs_of(experiment).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    assert outputs_of(experiment).count() == 2 * 2 * 6


def test_sigkill_mid_job_then_a_new_worker_finishes_everything_exactly_once(make_experiment, media_root, start_worker):
    # Enough work that the kill lands in the middle: 2 methods x 3 seeds x 6 samples.
    experiment = make_experiment(name="kill", seeds=(0, 1, 2), batch_size=2, steps=8, resolution=128)
    fast_recovery = dict(EVALSITE_HEARTBEAT_SECONDS=0.5, EVALSITE_STALE_SECONDS=3, EVALSITE_SWEEP_SECONDS=1)
    first = start_worker("first", **fast_recovery)
    total = selectors.experiment_progress(experiment).expected

    def mid_job():
        outputs = outputs_of(experiment, "pbe_tiny").count()
        return outputs >= 2 and jobs_of(experiment).filter(status=JobStatus.RUNNING).exists()

    wait_until(mid_job, 180, "the first outputs", first)
    first.kill()
    done_at_kill = outputs_of(experiment).count()
    assert done_at_kill < total, "the experiment finished before the kill; give it more work"
    assert jobs_of(experiment).filter(status=JobStatus.RUNNING).exists()

    second = start_worker("second", **fast_recovery)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 240, "recovery", second)
    assert set(jobs_of(experiment).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    retried = jobs_of(experiment).filter(attempts__gte=2)
    assert retried.exists()  # the sweep handed the killed job to the new worker


EXPERIMENT_FILE = """
name = "{name}"
dataset = "demo"
seeds = {seeds}
num_inference_steps = 2
resolution = 64
batch_size = 6
{methods}
"""
METHOD = """
[[methods]]
key = "{key}"
family = "{family}"
{checkpoint}
"""


def experiment_text(name, seeds, methods):
    blocks = "".join(
        METHOD.format(key=key, family=family, checkpoint=f'checkpoint = "{checkpoint}"' if checkpoint else "")
        for key, family, checkpoint in methods
    )
    return EXPERIMENT_FILE.format(name=name, seeds=list(seeds), methods=blocks)


def test_experiments_grow_and_share_a_methods_images_through_a_real_worker(
    demo_dataset, weights_dir, media_root, start_worker, tmp_path, capsys
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from generators.tiny import build_tiny_pbe

    a_file, b_file = tmp_path / "a.toml", tmp_path / "b.toml"
    a_methods = [("copy_paste", "copy_paste", ""), ("pbe", "pbe", "not-there-yet")]
    a_file.write_text(experiment_text("a", [0], a_methods))
    # A checkpoint evaluate cannot read is refused before any job exists: the method's
    # identity is a hash of its files.
    with pytest.raises(CommandError, match="not-there-yet") as refused:
        call_command("evaluate", str(a_file))
    assert "unet" in str(refused.value) and not GenerationJob.objects.exists()

    (weights_dir / "not-there-yet").symlink_to(weights_dir / "tiny" / "pbe")
    worker = start_worker()
    call_command("evaluate", str(a_file), wait=True, timeout=180)
    a = selectors_experiment("a")
    assert outputs_of(a).count() == 12
    made_for_a = {o.pk: o.created_at for o in Output.objects.all()}

    # B: the same pbe method (under another key, at another path) and a new one.
    build_tiny_pbe(weights_dir / "pbe-retrained", seed=1)
    (weights_dir / "same-weights").symlink_to(weights_dir / "tiny" / "pbe")
    b_file.write_text(experiment_text("b", [0], [("baseline", "pbe", "same-weights"), ("new", "pbe", "pbe-retrained")]))
    capsys.readouterr()
    call_command("evaluate", str(b_file), wait=True, timeout=180)
    assert "12 image(s) in all: 6 exist, 6 to generate" in capsys.readouterr().out
    b = selectors_experiment("b")
    assert outputs_of(b).count() == 12
    assert Output.objects.count() == 12 + 6  # only the new method's images were made
    assert set(outputs_of(b, "baseline").values_list("pk", flat=True)) == set(outputs_of(a, "pbe").values_list("pk", flat=True))

    # A gets a second seed: only that seed's images are made, nothing else is touched.
    a_file.write_text(experiment_text("a", [0, 1], a_methods))
    call_command("evaluate", str(a_file), wait=True, timeout=180)
    assert "+ seeds 1" in capsys.readouterr().out
    assert Output.objects.count() == 18 + 12
    a = selectors_experiment("a")
    assert set(outputs_of(a).filter(seed=1).values_list("method__family", flat=True)) == {"copy_paste", "pbe"}
    assert {o.pk: o.created_at for o in Output.objects.filter(pk__in=made_for_a)} == made_for_a
    assert_outputs_complete(a, media_root, of_all=False)
    assert "ERROR" not in worker.log()

    a_file.write_text(experiment_text("a", [0], a_methods).replace('dataset = "demo"', 'dataset = "nope"'))
    with pytest.raises(CommandError, match="dataset 'nope' is not imported"):
        call_command("evaluate", str(a_file))


def selectors_experiment(name):
    from evalsite.models import Experiment

    return Experiment.objects.get(name=name)
