"""Evaluating an experiment file: create or update the experiment, plan the images it is
missing, queue them; and cancelling an experiment's queued work.

An experiment is a view (dataset x methods x seeds). Outputs and jobs belong to method
identities, so whatever another experiment already made or queued for the same method is
used, not made again.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from evalsite.dispatch import send_generation_job
from evalsite.experiment_config import ExperimentConfig, MethodConfig
from evalsite.models import (
    ACTIVE_JOB_STATUSES,
    Dataset,
    Experiment,
    ExperimentMethod,
    GenerationJob,
    JobStatus,
    Method,
    Output,
)
from evalsite.selectors import dataset_get_by_reference, jobs_for
from evalsite.services.fine_tune_waits import fine_tunes_cancel_unneeded
from evalsite.services.fine_tuning import dataset_products, fine_tunes_plan, fine_tunes_send
from evalsite.services.metric_requests import metrics_request
from evalsite.services.methods import (
    checkpoint_identity,
    method_get_or_create,
    pixel_settings,
    resolve_checkpoint,
)
from generators.registry import validate_spec
from generators.types import GeneratorError, MethodSpec


class ExperimentError(Exception):
    pass


@dataclass
class ColumnChange:
    key: str
    change: str  # "added", "changed" or "removed"
    images: int = 0  # images this change costs (removed: images that leave the tables)
    identity: str = ""
    previous_identity: str = ""


@dataclass
class EvaluateReport:
    experiment: Experiment
    created: bool
    changes: list[ColumnChange] = field(default_factory=list)
    seeds_added: list[int] = field(default_factory=list)
    seeds_removed: list[int] = field(default_factory=list)
    images_expected: int = 0
    images_existing: int = 0
    images_missing: int = 0
    jobs_created: int = 0
    jobs_sent: list[int] = field(default_factory=list)
    jobs_cancelled: int = 0  # queued for removed methods or seeds, needed by no experiment
    metric_job: int | None = None  # queued now because every image already exists
    fine_tunes: int = 0  # DreamPaint: the fine-tunings its missing images need (done or not)
    fine_tunes_sent: list[int] = field(default_factory=list)  # of those, queued now
    single_image_products: int = 0  # products among them with one image (allowed; DreamBooth likes 3-5)

    @property
    def unchanged(self) -> bool:
        return not (self.created or self.changes or self.seeds_added or self.seeds_removed)


@dataclass
class CancelReport:
    experiment: Experiment
    cancelled: int  # queued jobs that will not run
    stopping: int  # running jobs that stop after their current batch
    kept_for_others: int  # queued jobs another experiment still needs


def experiment_evaluate(*, config: ExperimentConfig, user=None, on_message=None) -> EvaluateReport:
    """Create the experiment of `config`, or bring the existing one of that name up to
    the file; then queue every image it is missing that no job is making already.
    on_message(text) hears about slow steps (hashing new checkpoint files)."""
    dataset = dataset_get_by_reference(config.dataset)
    if dataset is None:
        raise ExperimentError(
            f"dataset {config.dataset!r} is not imported; import it first with: "
            f"python manage.py import_dataset PATH --name {config.dataset.partition('@')[0]}"
        )
    # Hashing checkpoints and product images reads files: before the transaction, which on
    # SQLite holds the lock.
    methods = _methods_of(config, on_message)
    products = dataset_products(dataset) if any(m.family == "dreampaint" for _, m in methods) else {}
    try:
        with transaction.atomic():
            report = _apply(config, dataset, methods, user, products)
    except IntegrityError:
        # The same new name was created by a concurrent evaluate: apply to that one.
        with transaction.atomic():
            report = _apply(config, dataset, methods, user, products)
    return report


def _methods_of(config: ExperimentConfig, on_message=None) -> list[tuple[MethodConfig, Method]]:
    problems, resolved = [], []
    for column in config.methods:
        checkpoint_hash = ""
        if column.checkpoint:
            path = resolve_checkpoint(column.checkpoint)

            def on_hashing(files, size, key=column.key, path=path):
                if on_message is not None:
                    on_message(f"method {key!r}: hashing {files} new checkpoint file(s) in {path} "
                               f"({size / 1e9:.2f} GB; once per version of the weights)")

            try:
                validate_spec(MethodSpec(column.family, column.params, path))
                checkpoint_hash = checkpoint_identity(path, on_hashing)
            except (GeneratorError, OSError) as exc:
                problems.append(
                    f"method {column.key!r}: {exc}\n    (a method's identity is a hash of its checkpoint's "
                    f"files, so `evaluate` must be able to read them on this machine)"
                )
                continue
        resolved.append((column, checkpoint_hash))
    if problems:
        raise ExperimentError(f"{config.name}: {len(problems)} method(s) cannot be used:\n  - " + "\n  - ".join(problems))
    return [
        (
            column,
            method_get_or_create(
                family=column.family,
                params=column.params,
                checkpoint=column.checkpoint,
                checkpoint_hash=checkpoint_hash,
                pixel_settings=pixel_settings(
                    column.family,
                    num_inference_steps=column.num_inference_steps or config.num_inference_steps,
                    guidance_scale=config.guidance_scale if column.guidance_scale is None else column.guidance_scale,
                    resolution=config.resolution,
                    batch_invariant=config.batch_invariant,
                ),
            ),
        )
        for column, checkpoint_hash in resolved
    ]


def _apply(config: ExperimentConfig, dataset: Dataset, methods, user, products) -> EvaluateReport:
    experiment = Experiment.objects.select_for_update().filter(name=config.name).first()
    fields = dict(
        config=config.as_json(),
        config_hash=config.content_hash(dataset.content_hash),
        seeds=list(config.seeds),
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        resolution=config.resolution,
        batch_size=config.batch_size,
        metrics=list(config.metrics),
        cancelled_at=None,
    )
    created = experiment is None
    if created:
        experiment = Experiment.objects.create(name=config.name, dataset=dataset, created_by=user, **fields)
        previous_columns, previous_seeds = {}, []
        previous_method_ids = []
    else:
        if experiment.dataset_id != dataset.pk:
            raise ExperimentError(
                f"experiment {config.name!r} uses dataset {experiment.dataset}; its file now names "
                f"{config.dataset!r} ({dataset}). An experiment's dataset cannot change: give the "
                f"experiment another name, or write dataset = \"{experiment.dataset.name}@{experiment.dataset.version}\""
            )
        previous_columns = {c.key: c for c in experiment.methods.select_related("method")}
        previous_seeds = list(experiment.seeds)
        previous_method_ids = [c.method_id for c in previous_columns.values()]
        for name, value in fields.items():
            setattr(experiment, name, value)
        experiment.save()

    report = EvaluateReport(experiment=experiment, created=created)
    sample_ids = list(dataset.samples.order_by("sample_id").values_list("pk", flat=True))
    report.seeds_added = [s for s in config.seeds if s not in previous_seeds] if not created else []
    report.seeds_removed = [s for s in previous_seeds if s not in config.seeds]
    _update_columns(experiment, methods, previous_columns, report, images_per_removed=len(previous_seeds) * len(sample_ids))

    method_ids = [method.pk for _, method in methods]
    missing = _missing_images(method_ids, list(config.seeds), dataset, sample_ids)
    report.images_expected = len(method_ids) * len(config.seeds) * len(sample_ids)
    report.images_missing = sum(len(v) for v in missing.values())
    report.images_existing = report.images_expected - report.images_missing
    _cost_of_changes(report, methods, missing)

    plans = {
        method.pk: fine_tunes_plan(method=method, products=products,
                                   needed={s for seed in config.seeds for s in missing[(method.pk, seed)]})
        for _, method in methods if method.family == "dreampaint"
    }
    created_jobs = _create_jobs(method_ids, list(config.seeds), dataset, missing, config.batch_size,
                                {method_id: plan.by_sample for method_id, plan in plans.items()})
    report.jobs_created = len(created_jobs)
    report.jobs_sent, report.fine_tunes_sent = _send_jobs(method_ids, list(config.seeds), dataset, created_jobs, plans)
    planned = {f.pk: f for plan in plans.values() for f in plan.by_sample.values()}
    report.fine_tunes = len(planned)
    report.single_image_products = len({f.product_id for f in planned.values() if f.image_count == 1})
    if report.changes or report.seeds_removed:
        report.jobs_cancelled = _cancel_unneeded(previous_method_ids, previous_seeds, dataset)
    if config.metrics and not jobs_for(method_ids, list(config.seeds), dataset).filter(
        status__in=ACTIVE_JOB_STATUSES
    ).exists():
        # Nothing left to generate (every image exists): no job's end will queue the
        # metrics, so they are queued now.
        report.metric_job = metrics_request(experiment=experiment)[0].pk
    return report


def _cancel_unneeded(method_ids, seeds, dataset) -> int:
    """Queued jobs of what left the experiment stop, unless an experiment still needs them."""
    needed = _needed_by_experiments(dataset)
    unneeded = [
        job_id
        for job_id, method_id, seed in jobs_for(method_ids, seeds, dataset)
        .filter(status=JobStatus.QUEUED)
        .values_list("pk", "method_id", "seed")
        if (method_id, seed) not in needed
    ]
    return GenerationJob.objects.filter(pk__in=unneeded, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, error="its method or seed was removed from the experiment file", finished_at=Now()
    )


def _update_columns(experiment, methods, previous_columns, report, *, images_per_removed: int) -> None:
    keep = set()
    new_columns = []
    for position, (column, method) in enumerate(methods):
        keep.add(column.key)
        previous = previous_columns.get(column.key)
        if previous is None:
            new_columns.append(ExperimentMethod(experiment=experiment, method=method, key=column.key, position=position))
            if previous_columns or not report.created:
                report.changes.append(ColumnChange(column.key, "added", identity=method.identity))
        else:
            if previous.method_id != method.pk:
                report.changes.append(
                    ColumnChange(column.key, "changed", identity=method.identity,
                                 previous_identity=previous.method.identity)
                )
            if previous.method_id != method.pk or previous.position != position:
                previous.method, previous.position = method, position
                previous.save(update_fields=["method", "position"])
    removed = [c for key, c in previous_columns.items() if key not in keep]
    for column in removed:
        report.changes.append(
            ColumnChange(column.key, "removed", images=images_per_removed, identity=column.method.identity)
        )
    if removed:
        ExperimentMethod.objects.filter(pk__in=[c.pk for c in removed]).delete()
    ExperimentMethod.objects.bulk_create(new_columns)


def _missing_images(method_ids, seeds, dataset, sample_ids) -> dict[tuple[int, int], list[int]]:
    """(method, seed) -> the samples without an output, in sample order. One query."""
    existing = set(
        Output.objects.filter(method_id__in=method_ids, seed__in=seeds, sample__dataset=dataset).values_list(
            "method_id", "seed", "sample_id"
        )
    )
    return {
        (method_id, seed): [s for s in sample_ids if (method_id, seed, s) not in existing]
        for method_id in method_ids
        for seed in seeds
    }


def _cost_of_changes(report: EvaluateReport, methods, missing) -> None:
    by_identity = {method.identity: method.pk for _, method in methods}
    for change in report.changes:
        if change.change in ("added", "changed"):
            method_id = by_identity[change.identity]
            change.images = sum(len(v) for (m, _), v in missing.items() if m == method_id)


def _create_jobs(method_ids, seeds, dataset, missing, batch_size, fine_tunes=None) -> list[int]:
    """Jobs for the missing images that no unfinished job covers. Seeds innermost: jobs are
    sent in creation order, so a worker meets the same samples in consecutive jobs and
    reuses their decoded images (services/generation.py). A few bulk queries in all.
    fine_tunes: method -> (sample -> FineTune) for DreamPaint methods, whose batches hold
    one product each (the product's fine-tuned weights are loaded once per job)."""
    fine_tunes = fine_tunes or {}
    through = GenerationJob.samples.through
    covered = set(
        through.objects.filter(
            generationjob__method_id__in=method_ids,
            generationjob__dataset=dataset,
            generationjob__seed__in=seeds,
        )
        .exclude(generationjob__status=JobStatus.SUCCEEDED)
        .values_list("generationjob__method_id", "generationjob__seed", "sample_id")
    )
    jobs, batches = [], []
    for method_id in method_ids:
        planned = fine_tunes.get(method_id, {})
        todo = {seed: [s for s in missing[(method_id, seed)] if (method_id, seed, s) not in covered] for seed in seeds}
        for group in _by_fine_tune(todo, planned):
            longest = max((len(v) for v in group.values()), default=0)
            for start in range(0, longest, batch_size):
                for seed in seeds:
                    batch = group[seed][start : start + batch_size]
                    if batch:
                        fine_tune = planned.get(batch[0])
                        jobs.append(GenerationJob(method_id=method_id, dataset=dataset, seed=seed, progress_total=len(batch),
                                                  fine_tune=fine_tune))
                        batches.append(batch)
    if not jobs:
        return []
    jobs = GenerationJob.objects.bulk_create(jobs)
    through.objects.bulk_create(
        [through(generationjob_id=job.pk, sample_id=sample) for job, batch in zip(jobs, batches) for sample in batch]
    )
    return [job.pk for job in jobs]


def _by_fine_tune(todo: dict[int, list[int]], planned: dict) -> list[dict[int, list[int]]]:
    """The samples to do, per seed, split by the fine-tuning they need (one group when none)."""
    if not planned:
        return [todo]
    order = list(dict.fromkeys(planned[s].pk for samples in todo.values() for s in samples))
    return [{seed: [s for s in samples if planned[s].pk == fine_tune_id] for seed, samples in todo.items()}
            for fine_tune_id in order]


def _send_jobs(method_ids, seeds, dataset, created: list[int], plans=None) -> tuple[list[int], list[int]]:
    """Send the new jobs, and give failed and cancelled ones another try. Jobs queued
    earlier keep their message; should it be lost, the workers' sweep sends it again."""
    jobs = jobs_for(method_ids, seeds, dataset)
    # Cancelled while running and still held by its worker: it simply goes on.
    jobs.filter(status=JobStatus.CANCELLED).exclude(claim="").update(status=JobStatus.RUNNING, error="")
    retry = list(
        jobs.select_for_update()
        .filter(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .values_list("pk", flat=True)
    )
    GenerationJob.objects.filter(pk__in=retry).update(status=JobStatus.QUEUED, claim="", queued_at=Now(), error="")
    # DreamPaint's jobs wait for their product's fine-tuning, which is sent instead.
    to_send, fine_tunes_sent = fine_tunes_send(sorted(set(retry) | set(created)), plans or {})
    for job_id in to_send:
        send_generation_job(job_id)
    return to_send, fine_tunes_sent


def experiment_cancel(*, name: str) -> CancelReport:
    """Stop an experiment's queued work; running jobs stop after their current batch.
    Jobs another (not cancelled) experiment needs go on."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().filter(name=name).first()
        if experiment is None:
            raise ExperimentError(f"no experiment named {name!r}; `python manage.py experiments` lists them")
        experiment.cancelled_at = timezone.now()
        experiment.save(update_fields=["cancelled_at", "updated_at"])
        needed = _needed_by_experiments(experiment.dataset, besides=experiment)
        method_ids = list(experiment.methods.values_list("method_id", flat=True))
        active = jobs_for(method_ids, experiment.seeds, experiment.dataset).filter(
            status__in=ACTIVE_JOB_STATUSES
        )
        to_cancel, kept = defaultdict(list), 0
        for job_id, method_id, seed, status in active.values_list("pk", "method_id", "seed", "status"):
            if (method_id, seed) in needed:
                kept += 1
            else:
                to_cancel[status].append(job_id)
        # A running job keeps its claim: its worker writes the batch in hand, then stops.
        GenerationJob.objects.filter(pk__in=to_cancel[JobStatus.QUEUED], status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, error="cancelled with evaluate --cancel", finished_at=Now()
        )
        GenerationJob.objects.filter(pk__in=to_cancel[JobStatus.RUNNING], status=JobStatus.RUNNING).update(
            status=JobStatus.CANCELLED, error="cancelled with evaluate --cancel while running"
        )
        fine_tunes_cancel_unneeded()
    return CancelReport(
        experiment=experiment,
        cancelled=len(to_cancel[JobStatus.QUEUED]),
        stopping=len(to_cancel[JobStatus.RUNNING]),
        kept_for_others=kept,
    )


def _needed_by_experiments(dataset: Dataset, besides: Experiment | None = None) -> set[tuple[int, int]]:
    """(method, seed) pairs that the experiments on `dataset` (not cancelled, other than
    `besides`) show."""
    experiments = Experiment.objects.filter(dataset=dataset, cancelled_at__isnull=True).prefetch_related("methods")
    if besides is not None:
        experiments = experiments.exclude(pk=besides.pk)
    return {(column.method_id, seed) for e in experiments for column in e.methods.all() for seed in e.seeds}

