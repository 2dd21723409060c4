"""Creating experiments and queuing their generation jobs."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.functions import Now

from evalsite.experiment_config import ExperimentConfig
from evalsite.models import Experiment, GenerationJob, JobStatus, Method
from evalsite.selectors import dataset_get_by_reference


class ExperimentError(Exception):
    pass


def resolve_checkpoint(checkpoint: str) -> str:
    """Relative checkpoint paths are resolved against EVALSITE_WEIGHTS_DIR."""
    if not checkpoint:
        return ""
    path = Path(checkpoint).expanduser()
    if not path.is_absolute():
        path = Path(settings.EVALSITE_WEIGHTS_DIR) / path
    return str(path)


def experiment_create(*, config: ExperimentConfig, user=None) -> tuple[Experiment, bool]:
    """Create the experiment, or return the existing one of that name when its
    configuration is the same (so that re-running an experiment file fills gaps)."""
    dataset = dataset_get_by_reference(config.dataset)
    if dataset is None:
        raise ExperimentError(
            f"dataset {config.dataset!r} is not imported; import it first with: "
            f"python manage.py import_dataset PATH --name {config.dataset.partition('@')[0]}"
        )
    config_hash = config.content_hash(dataset.content_hash)
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                name=config.name,
                dataset=dataset,
                config=config.as_json(),
                config_hash=config_hash,
                seeds=list(config.seeds),
                num_inference_steps=config.num_inference_steps,
                guidance_scale=config.guidance_scale,
                resolution=config.resolution,
                batch_size=config.batch_size,
                metrics=list(config.metrics),
                created_by=user,
            )
            for position, method in enumerate(config.methods):
                Method.objects.create(
                    experiment=experiment,
                    key=method.key,
                    family=method.family,
                    params=method.params,
                    checkpoint=method.checkpoint,
                    position=position,
                )
            _create_jobs(experiment)
    except IntegrityError:  # the name exists (possibly created a moment ago by another run)
        existing = Experiment.objects.get(name=config.name)
        if existing.config_hash != config_hash:
            raise ExperimentError(
                f"experiment {config.name!r} already exists with a different configuration "
                f"(dataset version, methods, seeds or sampling settings changed); give the new one another name"
            ) from None
        return existing, False
    return experiment, True


def _create_jobs(experiment: Experiment) -> None:
    """Seeds innermost: jobs are sent in creation order, so a worker meets the same samples
    in consecutive jobs and reuses their decoded images (services/generation.py)."""
    samples = list(experiment.dataset.samples.order_by("sample_id"))
    size = experiment.batch_size
    for method in experiment.methods.all():
        for start in range(0, len(samples), size):
            batch = samples[start : start + size]
            for seed in experiment.seeds:
                job = GenerationJob.objects.create(
                    experiment=experiment, method=method, seed=seed, progress_total=len(batch)
                )
                job.samples.set(batch)


def experiment_enqueue(*, experiment: Experiment) -> list[int]:
    """Send every job that is not finished or held by a live worker. Failed jobs are
    given another try; finished outputs are never regenerated (the worker skips them)."""
    from evalsite.tasks import generate_job

    with transaction.atomic():
        jobs = list(
            GenerationJob.objects.select_for_update()
            .filter(experiment=experiment, status__in=[JobStatus.QUEUED, JobStatus.FAILED])
            .values_list("pk", flat=True)
        )
        GenerationJob.objects.filter(pk__in=jobs).update(status=JobStatus.QUEUED, queued_at=Now(), error="")
        for job_id in jobs:
            generate_job.delay_on_commit(job_id)
    return jobs
