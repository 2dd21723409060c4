import shutil

import pytest
from django.urls import reverse

from evalsite.services.generation import job_run
from tests.conftest import jobs_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    return django_user_model.objects.create_user("researcher", password="pw-123456")


@pytest.mark.parametrize("name", ["experiment-list", "admin:index"])
def test_pages_require_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and "login" in response["Location"]


def test_experiment_pages_and_media_require_login(client, make_experiment):
    experiment = make_experiment()
    sample = experiment.dataset.samples.first()
    for url in (
        reverse("experiment-detail", args=[experiment.pk]),
        reverse("experiment-progress", args=[experiment.pk]),
        sample.scene.url,
    ):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"], url


def test_list_detail_progress_and_grid(client, researcher, make_experiment):
    experiment = make_experiment(seeds=(0, 3))
    client.force_login(researcher)
    listing = client.get(reverse("experiment-list")).content.decode()
    assert experiment.name in listing and "in progress" in listing

    progress = client.get(reverse("experiment-progress", args=[experiment.pk])).json()
    assert progress["expected"] == 2 * 2 * 6 and progress["done"] == 0 and not progress["finished"]
    assert progress["jobs_by_status"]["queued"] == jobs_of(experiment).count()
    assert [m["key"] for m in progress["methods"]] == ["copy_paste", "pbe_tiny"]

    for job in jobs_of(experiment).filter(seed=0):
        job_run(job_id=job.pk)
    progress = client.get(reverse("experiment-progress", args=[experiment.pk])).json()
    assert progress["done"] == 2 * 6 and progress["percent"] == 50.0
    assert [(m["done"], m["expected"]) for m in progress["methods"]] == [(6, 12), (6, 12)]
    assert progress["jobs_by_status"]["succeeded"] == jobs_of(experiment).filter(seed=0).count()

    page = client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    # Grid for the first seed: every sample row has its scene preview, reference and both outputs.
    for sample in experiment.dataset.samples.all():
        assert sample.preview.url in page and sample.reference.url in page
    for output in experiment.methods.get(key="pbe_tiny").method.outputs.filter(seed=0):
        assert output.image.url in page
    other_seed = client.get(reverse("experiment-detail", args=[experiment.pk]) + "?seed=3").content.decode()
    assert other_seed.count(">pending<") == 2 * 6
    assert client.get(reverse("experiment-detail", args=[experiment.pk]) + "?seed=99").status_code == 404

    image = client.get(sample.scene.url)
    assert image.status_code == 200 and b"".join(image.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_job_message_is_shown(client, researcher, make_experiment, weights_dir):
    shutil.copytree(weights_dir / "tiny" / "pbe", weights_dir / "missing-model")
    experiment = make_experiment(checkpoint="missing-model")
    shutil.rmtree(weights_dir / "missing-model")
    for job in jobs_of(experiment):
        job_run(job_id=job.pk)
    client.force_login(researcher)
    page = client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    assert "failed" in page and "missing-model" in page
