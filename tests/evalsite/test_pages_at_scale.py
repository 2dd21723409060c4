"""The experiment page at 1,000 samples x 10 methods x 3 seeds, the output page, and what
the media view serves to whom."""
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evalsite.models import (
    Experiment, ExperimentMethod, GenerationJob, JobStatus, Method, Output, Sample, SampleScore, Score,
)
from evalsite.results import scope_of
from evalsite.services.generation import job_run
from tests.conftest import jobs_of

pytestmark = pytest.mark.django_db

SAMPLES, METHODS, SEEDS = 1000, 10, 3


@pytest.fixture
def researcher(django_user_model):
    return django_user_model.objects.create_user("researcher", password="pw-123456")


@pytest.fixture
def large_experiment(demo_dataset):
    """Rows only (the files of the demo's first sample stand in for every image): the
    page's cost is in its queries, not in the files."""
    template = demo_dataset.samples.order_by("sample_id").first()
    samples = Sample.objects.bulk_create(
        Sample(
            dataset=demo_dataset, sample_id=f"s{i:04d}", scene=template.scene.name, mask=template.mask.name,
            reference=template.reference.name, ground_truth=template.ground_truth.name, preview=template.preview.name,
            product_id=f"p{i % 7}", caption=f"caption number {i}", category="thing", width=template.width,
            height=template.height,
        )
        for i in range(SAMPLES)
    )
    experiment = Experiment.objects.create(
        name="large", dataset=demo_dataset, config={}, config_hash="x", seeds=list(range(SEEDS)),
        num_inference_steps=2, guidance_scale=5.0, resolution=64, batch_size=4, metrics=["clip_score", "fid"],
    )
    methods = Method.objects.bulk_create(
        Method(identity=f"{i:064d}", family="copy_paste", params={}, resolution=64) for i in range(METHODS)
    )
    ExperimentMethod.objects.bulk_create(
        ExperimentMethod(experiment=experiment, method=m, key=f"m{i}", position=i) for i, m in enumerate(methods)
    )
    outputs = [
        Output(method=m, sample=s, seed=seed, image=template.scene.name, device="cpu", seconds=0.1,
               provenance={"family": "copy_paste"})
        for m in methods for s in samples for seed in range(SEEDS)
    ]
    Output.objects.bulk_create(outputs, batch_size=2000)
    GenerationJob.objects.bulk_create(
        GenerationJob(method=m, dataset=demo_dataset, seed=seed, status=JobStatus.SUCCEEDED, progress_total=4)
        for m in methods for seed in range(SEEDS) for _ in range(SAMPLES // 4)
    )
    _scores(experiment, methods, samples)
    return experiment


def _scores(experiment, methods, samples):
    """A score per method and metric on the table's scope, with per-sample CLIP values."""
    scope = scope_of(experiment)
    assert len(scope.samples) == SAMPLES  # the demo's own 6 have no outputs here
    for index, method in enumerate(methods):
        for metric in ("clip_score", "fid"):
            score = Score.objects.create(
                method=method, dataset=experiment.dataset, metric=metric, scope=scope.key(metric),
                value=80.0 - index if metric == "clip_score" else 10.0 + index, ci_low=1.0, ci_high=2.0,
                n_generated=SAMPLES * SEEDS, extractor="x", extractor_sha256="0" * 64, protocol="p", seeds=[0, 1, 2],
            )
            if metric == "clip_score":
                SampleScore.objects.bulk_create(
                    (SampleScore(score=score, sample=s, seed=seed, value=80.0 - index + (i % 5))
                     for i, s in enumerate(samples) for seed in range(SEEDS)), batch_size=5000)


def test_large_experiment_page_and_poll_stay_small(client, researcher, large_experiment):
    client.force_login(researcher)
    url = reverse("experiment-detail", args=[large_experiment.pk])
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url + "?seed=2&page=3")
    assert page.status_code == 200
    assert len(queries.captured_queries) < 25, len(queries.captured_queries)
    html = page.content.decode()
    assert html.count('class="output"') == 24 * METHODS  # one page of samples
    assert "page 3 of 42" in html and "caption number 48" in html and "product p6" in html
    assert "Ground truth" in html
    # The comparison table: every method, the best in bold, the others significantly worse.
    assert html.count('<td class="num best"') == 2 and html.count('class="worse"') == METHODS - 1
    assert html.count('<svg class="metric-plot"') == 2
    total = large_experiment.dataset.samples.count() * METHODS * SEEDS  # the demo's 6 samples too
    assert f"{SAMPLES * METHODS * SEEDS} / {total} images" in html

    with CaptureQueriesContext(connection) as queries:
        poll = client.get(reverse("experiment-progress", args=[large_experiment.pk]))
    assert len(queries.captured_queries) < 12
    body = poll.json()
    assert body["done"] == SAMPLES * METHODS * SEEDS and body["expected"] == total
    assert body["finished"] and body["status"] == "incomplete"  # the demo's own 6 have no images
    assert len(body["methods"]) == METHODS and "jobs" not in body
    assert len(json.dumps(body)) < 5000  # counts, not a row per job (7,500 jobs here)


def test_each_thumbnail_opens_the_full_image_with_its_provenance(client, researcher, make_experiment):
    experiment = make_experiment()
    for job in jobs_of(experiment):
        job_run(job_id=job.pk)
    client.force_login(researcher)
    page = client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    output = Output.objects.filter(method__family="pbe").first()
    link = reverse("output-detail", args=[output.pk])
    assert f'href="{link}"' in page
    detail = client.get(link).content.decode()
    assert output.image.url in detail and output.method.identity in detail
    assert "num_inference_steps" in detail and "worker" in detail
    assert "tiny" in detail  # shown in: the experiment and its key
    assert client.get(reverse("output-detail", args=[999999])).status_code == 404


def test_media_serves_researchers_dataset_images_and_outputs_only(client, researcher, make_experiment, media_root):
    experiment = make_experiment()
    job_run(job_id=jobs_of(experiment).first().pk)
    sample = experiment.dataset.samples.first()
    output = Output.objects.first()
    anonymous = client.get(output.image.url)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    client.force_login(researcher)
    assert client.get(sample.scene.url).status_code == 200
    assert client.get(output.image.url).status_code == 200
    # A writer's temp file, anything outside the researcher folders, hidden files, traversal.
    partial = media_root / "outputs" / "x.png.1234.partial"
    partial.write_bytes(b"half a png")
    (media_root / "features").mkdir()
    (media_root / "features" / "cache.npy").write_bytes(b"x")
    (media_root / "outputs" / ".hidden").write_bytes(b"x")
    for path in ("outputs/x.png.1234.partial", "features/cache.npy", "outputs/.hidden", "outputs/../features/cache.npy",
                 "datasets/../../secret_key"):
        assert client.get(f"/media/{path}").status_code == 404, path
    researcher.is_active = False
    researcher.save()
    assert client.get(sample.scene.url).status_code == 302  # signed out with the account
