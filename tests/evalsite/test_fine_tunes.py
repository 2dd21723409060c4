"""DreamPaint's fine-tunings as jobs: planned per product, reused by identity, waited for by
the product's generation jobs, failing alone. Jobs run in this process here; tests/e2e has
the same with a real worker."""
import csv
import shutil

import pytest
from django.core.management import call_command

from evalsite.experiment_config import parse_experiment_config
from evalsite.models import FineTune, GenerationJob, JobStatus
from evalsite.services.datasets import dataset_import
from evalsite.services.experiments import experiment_evaluate
from evalsite.services.fine_tuning import fine_tune_folder, fine_tune_run
from evalsite.services.generation import job_run
from tests.conftest import jobs_of, outputs_of

pytestmark = pytest.mark.django_db

DREAMPAINT = """
name = "{name}"
dataset = "{dataset}"
seeds = [0]
num_inference_steps = {steps}
resolution = 64
batch_size = 4
metrics = []

[[methods]]
key = "DreamPaint"
family = "dreampaint"
checkpoint = "tiny/sd_inpainting"
params = {{ mode = "lora", steps = 3, rank = 4, resolution = 64, learning_rate = 0.001 }}
"""


def evaluate(name="dp", steps=2, dataset="demo"):
    return experiment_evaluate(config=parse_experiment_config(DREAMPAINT.format(name=name, steps=steps, dataset=dataset)))


def run_fine_tunes():
    return [fine_tune_run(job_id=pk) for pk in FineTune.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True)]


@pytest.fixture
def shared_product_dataset(media_root, demo_dataset_dir, tmp_path):
    """The demo dataset with two samples sharing one product (two images of it)."""
    folder = shutil.copytree(demo_dataset_dir, tmp_path / "shared")
    manifest = folder / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    for row in rows:
        if row["sample_id"] in ("coffee-cup", "cat-face"):
            row["product_id"] = "mug"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dataset_import(path=folder, name="shared").dataset


def test_one_fine_tuning_per_product_then_its_images(shared_product_dataset, weights_dir):
    report = evaluate(dataset="shared")
    experiment = report.experiment
    fine_tunes = list(FineTune.objects.order_by("product_id"))
    assert len(fine_tunes) == report.fine_tunes == 5  # six samples, two of them one product
    mug = FineTune.objects.get(product_id="mug")
    assert mug.image_count == 2 and mug.recipe["steps"] == 3 and mug.prompt.startswith("a photo of sks ")
    # Each job holds one product; none is sent before its fine-tuning is done.
    jobs = list(jobs_of(experiment))
    assert all(job.fine_tune is not None for job in jobs) and report.jobs_sent == []
    assert sorted(report.fine_tunes_sent) == sorted(f.pk for f in fine_tunes)
    for job in jobs:
        assert {sample.product_id or sample.sample_id for sample in job.samples.all()} == {job.fine_tune.product_id}

    reports = run_fine_tunes()
    assert [r.status for r in reports] == ["succeeded"] * 5
    mug.refresh_from_db()
    assert mug.status == JobStatus.SUCCEEDED and mug.progress_done == 3 and len(mug.losses) == 3
    assert mug.size_bytes > 0 and (fine_tune_folder(mug) / "dreampaint.json").is_file()
    for job in jobs_of(experiment):
        assert job_run(job_id=job.pk).status == "succeeded"
    assert outputs_of(experiment).count() == 6


def test_a_second_experiment_reuses_the_fine_tunings(demo_dataset, weights_dir):
    evaluate(name="first", steps=2)
    run_fine_tunes()
    second = evaluate(name="second", steps=3)  # another method (steps), the same recipe
    assert FineTune.objects.count() == 6 and second.fine_tunes_sent == []
    assert len(second.jobs_sent) == len(jobs_of(second.experiment)) > 0  # sent at once: nothing to wait for
    assert set(jobs_of(second.experiment).values_list("fine_tune__status", flat=True)) == {JobStatus.SUCCEEDED}
    assert list(FineTune.objects.values_list("attempts", flat=True)) == [1] * 6


def test_an_unreadable_product_fails_alone_with_its_file_named(demo_dataset, weights_dir):
    broken = demo_dataset.samples.get(sample_id="patch-logo")
    good_bytes = open(broken.reference.path, "rb").read()
    with open(broken.reference.path, "wb") as handle:
        handle.write(b"this is not an image")
    experiment = evaluate().experiment
    run_fine_tunes()
    failed = FineTune.objects.get(product_id="logo")
    assert failed.status == JobStatus.FAILED
    assert "product 'logo': unreadable image(s): sample 'patch-logo'" in failed.error
    assert not fine_tune_folder(failed).exists()
    waiting = GenerationJob.objects.get(fine_tune=failed)
    assert waiting.status == JobStatus.FAILED
    assert waiting.error.startswith("DreamPaint's fine-tuning failed: product 'logo': unreadable image(s)")
    assert FineTune.objects.filter(status=JobStatus.SUCCEEDED).count() == 5
    for job in jobs_of(experiment).filter(status=JobStatus.QUEUED):
        job_run(job_id=job.pk)
    assert outputs_of(experiment).count() == 5
    # The file fixed, `evaluate` again plans the product anew (other bytes, another identity):
    # the failed job points at the new fine-tuning, which runs; nothing else is redone.
    with open(broken.reference.path, "wb") as handle:
        handle.write(good_bytes)
    again = evaluate()
    (fixed,) = FineTune.objects.exclude(pk=failed.pk).filter(product_id="logo")
    assert again.fine_tunes == 1 and again.fine_tunes_sent == [fixed.pk]
    assert GenerationJob.objects.get(pk=waiting.pk).fine_tune_id == fixed.pk
    assert [r.status for r in run_fine_tunes()] == ["succeeded"]
    job_run(job_id=waiting.pk)
    assert outputs_of(experiment).count() == 6
    assert FineTune.objects.get(pk=failed.pk).status == JobStatus.FAILED  # unused now: prune deletes it


def test_the_sweep_settles_jobs_whose_fine_tuning_ended_unseen(demo_dataset, weights_dir):
    """A fine-tuning that ended while an `evaluate` added jobs waiting for it: the sweep fails
    them with its message (failed), or queues it again (cancelled); a stale waiting job is
    never sent before its fine-tuning is done."""
    from django.db.models.functions import Now

    from evalsite.services.jobs import jobs_recover

    evaluate(name="late")
    cat, cup = FineTune.objects.get(product_id="cat-face"), FineTune.objects.get(product_id="coffee-cup")
    FineTune.objects.filter(pk=cat.pk).update(status=JobStatus.FAILED, error="product 'cat-face': boom")
    FineTune.objects.filter(pk=cup.pk).update(status=JobStatus.CANCELLED)
    stale = Now() - __import__("datetime").timedelta(hours=1)
    GenerationJob.objects.update(queued_at=stale)
    FineTune.objects.exclude(pk__in=[cat.pk, cup.pk]).update(queued_at=stale)
    acted = jobs_recover()
    assert cat.pk in acted and cup.pk in acted
    assert GenerationJob.objects.get(fine_tune=cat).status == JobStatus.FAILED
    assert "boom" in GenerationJob.objects.get(fine_tune=cat).error
    assert FineTune.objects.get(pk=cup.pk).status == JobStatus.QUEUED
    assert GenerationJob.objects.filter(status=JobStatus.QUEUED).count() == 5  # waiting, not sent


def test_prune_deletes_what_no_experiment_uses(demo_dataset, weights_dir, capsys, django_capture_on_commit_callbacks):
    evaluate(name="kept")
    run_fine_tunes()
    folders = [fine_tune_folder(f) for f in FineTune.objects.all()]
    call_command("prune_fine_tunes")
    assert "nothing to delete" in capsys.readouterr().out
    from evalsite.models import Experiment

    Experiment.objects.all().delete()
    call_command("prune_fine_tunes", "--dry-run")
    assert "would delete 6 fine-tuning(s)" in capsys.readouterr().out and all(f.exists() for f in folders)
    with django_capture_on_commit_callbacks(execute=True):  # the folders go once the rows' deletion commits
        call_command("prune_fine_tunes")
    assert "deleted 6 fine-tuning(s)" in capsys.readouterr().out
    assert not FineTune.objects.exists() and not any(f.exists() for f in folders)


def test_cancelling_the_only_experiment_stops_its_fine_tunings(demo_dataset, weights_dir):
    from evalsite.services.experiments import experiment_cancel

    evaluate(name="stopped")
    assert experiment_cancel(name="stopped").cancelled == 6
    assert set(FineTune.objects.values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert run_fine_tunes() == []
    # evaluate again picks them up where they were.
    assert len(evaluate(name="stopped").fine_tunes_sent) == 6


def test_the_experiment_page_shows_each_products_step_and_loss(demo_dataset, weights_dir, client, django_user_model):
    from django.urls import reverse

    experiment = evaluate(name="shown").experiment
    run_fine_tunes()
    client.force_login(django_user_model.objects.create_user("r", password="x"))
    html = client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    assert "Fine-tuning (DreamPaint)" in html and html.count('<tr data-fine-tune=') == 6
    loss = FineTune.objects.get(product_id="logo").last_loss
    assert f"{loss:.4f}" in html and "3 / 3" in html and "1 image<" in html
    poll = client.get(reverse("experiment-progress", args=[experiment.pk])).json()
    assert {f["product"]: (f["status"], f["step"], f["steps"]) for f in poll["fine_tunes"]}["logo"] == ("succeeded", 3, 3)
