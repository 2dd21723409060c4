"""DreamPaint's per-product fine-tunings: planned by `evaluate` (one per product, base and
recipe, found again by identity whichever experiment or method asks), run by a GPU worker,
and the generation jobs that wait for them (sent when it succeeds, failed with its message
when it fails).

A product is the samples sharing a product_id (a sample without one is a product alone);
its images are their references.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models.functions import Now

from evalsite.dispatch import send_fine_tune_job
from evalsite.models import ACTIVE_JOB_STATUSES, Dataset, FineTune, GenerationJob, JobStatus, Method, Sample
from evalsite.services.fine_tune_waits import fine_tune_ended, waiting_experiments_lock
from evalsite.services.generator_cache import worker_device
from evalsite.services.jobs import Heartbeat, job_claim, job_finish, job_release, new_claim_token
from evalsite.services.methods import checkpoint_identity, file_digests, resolve_checkpoint
from evalsite.services.storage import open_image
from generators.types import GeneratorError

log = logging.getLogger(__name__)

FOLDER = "dreampaint"  # under EVALSITE_WEIGHTS_DIR
PROGRESS_EVERY_SECONDS = 1.0  # at most this often the row is written during training


def product_key(sample: Sample) -> str:
    return sample.product_id or sample.sample_id


def fine_tune_folder(fine_tune: FineTune) -> Path:
    return Path(settings.EVALSITE_WEIGHTS_DIR) / fine_tune.path


@dataclass
class Product:
    key: str
    samples: list[Sample]
    images_hash: str  # sha256 over its image files' bytes


def dataset_products(dataset: Dataset) -> dict[str, Product]:
    """The dataset's products with their images' hash. May read reference files: call it
    before a transaction (on SQLite a transaction holds the database's write lock)."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples.order_by("sample_id"):
        grouped[product_key(sample)].append(sample)
    return {key: Product(key, samples, _images_hash(samples)) for key, samples in grouped.items()}


def _images_hash(samples: list[Sample]) -> str:
    digest = hashlib.sha256()
    for sample, file_digest in zip(samples, _file_digests([s.reference.name for s in samples])):
        digest.update(file_digest.encode())
    return digest.hexdigest()


def _file_digests(names: list[str]) -> list[str]:
    """sha256 of each stored file. On a filesystem through the digest cache checkpoints use
    (by path, size and mtime): an `evaluate` reads only the files it has not seen; an
    unreadable file gets a marker that fails its fine-tuning, with the file named, when it runs."""
    try:
        paths = [Path(default_storage.path(name)) for name in names]
    except NotImplementedError:  # object storage: read the bytes
        paths = None
    if paths is not None:
        try:
            return file_digests(paths)
        except OSError:
            pass  # one is missing: name it below
    found = []
    for name in names:
        try:
            with default_storage.open(name, "rb") as handle:
                found.append(hashlib.sha256(handle.read()).hexdigest())
        except OSError as exc:
            found.append(f"unreadable {name}: {exc}")
    return found


@dataclass
class Plan:
    by_sample: dict[int, FineTune]  # sample pk -> its product's fine-tuning
    created: set[int]  # fine-tunings created by this plan


def fine_tunes_plan(*, method: Method, products: dict[str, Product], needed: set[int]) -> Plan:
    """The fine-tunings `method` (a dreampaint method) needs for the samples `needed` (those
    missing an image), created when new. The identity covers the product's image bytes,
    the base checkpoint's content and the recipe, not the sampling settings: methods that
    differ only there share it."""
    from generators.dreampaint import Recipe, instance_prompt

    recipe = Recipe.from_params(method.params)
    plan = Plan({}, set())
    for product in products.values():
        if not needed.intersection(sample.pk for sample in product.samples):
            continue
        identity = hashlib.sha256(json.dumps(
            {"product": product.key, "images": product.images_hash, "base": method.checkpoint_hash,
             "recipe": recipe.hash()},
            sort_keys=True,
        ).encode()).hexdigest()
        category = next((s.category for s in product.samples if s.category), "")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", product.key).strip("-.")[:40] or "product"
        fine_tune, created = FineTune.objects.get_or_create(identity=identity, defaults=dict(
            product_id=product.key, category=category, dataset=product.samples[0].dataset,
            images_hash=product.images_hash, image_count=len(product.samples), base_checkpoint=method.checkpoint,
            base_hash=method.checkpoint_hash, recipe=recipe.as_dict(), recipe_hash=recipe.hash(),
            prompt=instance_prompt(category), path=f"{FOLDER}/{slug}-{identity[:12]}", progress_total=recipe.steps,
        ))
        if created:
            plan.created.add(fine_tune.pk)
        plan.by_sample.update({sample.pk: fine_tune for sample in product.samples})
    return plan


def _repoint(job_ids: list[int], plans: dict[int, Plan]) -> None:
    """Jobs to (re)send point at the fine-tuning planned now for their product (a retried
    job may point at an older one: other image bytes, or one deleted since)."""
    through = GenerationJob.samples.through
    wanted: dict[int, set[int]] = defaultdict(set)
    rows = through.objects.filter(generationjob_id__in=job_ids, generationjob__method_id__in=list(plans))
    for job_id, method_id, sample_id, current in rows.values_list(
        "generationjob_id", "generationjob__method_id", "sample_id", "generationjob__fine_tune_id"
    ):
        planned = plans[method_id].by_sample.get(sample_id)
        if planned is not None and planned.pk != current:
            wanted[planned.pk].add(job_id)
    for fine_tune_id, jobs in wanted.items():
        GenerationJob.objects.filter(pk__in=jobs).update(fine_tune_id=fine_tune_id)


def _needs_run(fine_tune: FineTune) -> bool:
    if fine_tune.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return True
    # Finished, but its folder is gone (deleted by hand): trained again.
    return fine_tune.status == JobStatus.SUCCEEDED and not fine_tune_folder(fine_tune).is_dir()


def fine_tunes_send(job_ids: list[int], plans: dict[int, Plan]) -> tuple[list[int], list[int]]:
    """Of generation jobs about to be sent: those whose fine-tuning is done go; the others
    wait, and their fine-tunings are sent: the new ones, and those to run again (failed,
    cancelled, or finished with their folder gone). Returns (jobs to send now, fine-tunings sent)."""
    _repoint(job_ids, plans)
    ready, waiting_on = [], {}
    for job in GenerationJob.objects.filter(pk__in=job_ids).select_related("fine_tune", "method"):
        fine_tune = job.fine_tune
        if fine_tune is None or (fine_tune.status == JobStatus.SUCCEEDED and not _needs_run(fine_tune)):
            ready.append(job.pk)  # a dreampaint job without one fails with a message saying so
        else:
            waiting_on[fine_tune.pk] = fine_tune
    again = [pk for pk, fine_tune in waiting_on.items() if _needs_run(fine_tune)]
    FineTune.objects.filter(pk__in=again, status__in=[JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUCCEEDED]).update(
        status=JobStatus.QUEUED, claim="", queued_at=Now(), error=""
    )
    created = set().union(*(plan.created for plan in plans.values())) if plans else set()
    to_send = sorted(set(again) | (created & set(waiting_on)))
    for fine_tune_id in to_send:
        send_fine_tune_job(fine_tune_id)
    return sorted(ready), to_send


def fine_tune_ready(job: GenerationJob) -> Path:
    """The finished fine-tuning folder a DreamPaint generation job needs; GeneratorError
    when it is not there (never a half-written one: it is renamed into place whole)."""
    fine_tune = job.fine_tune
    if fine_tune is None:
        raise GeneratorError("this job's product fine-tuning was deleted; run `evaluate` again to plan it anew")
    folder = fine_tune_folder(fine_tune)
    if fine_tune.status != JobStatus.SUCCEEDED or not folder.is_dir():
        raise GeneratorError(
            f"the fine-tuning of product {fine_tune.product_id!r} is {fine_tune.status}"
            + ("" if folder.is_dir() or fine_tune.status != JobStatus.SUCCEEDED else f" but {folder} is gone")
            + "; run `evaluate` again"
        )
    return folder


@dataclass
class FineTuneReport:
    job_id: int
    status: str
    steps: int = 0
    resumed_from: int = 0


class _Progress:
    """on_step for generators.dreampaint.fine_tune: the row's step and losses, at most once
    a second (and at the last step); False (stop) once the job is no longer ours."""

    def __init__(self, fine_tune: FineTune, token: str, heartbeat: Heartbeat):
        self.fine_tune, self.token, self.heartbeat = fine_tune, token, heartbeat
        # A resumed run repeats the steps after its last save with the same draws.
        self.losses: dict[int, float] = dict(enumerate(fine_tune.losses, start=1))
        self.written = 0.0

    def __call__(self, step: int, loss: float) -> bool:
        self.losses[step] = loss
        if self.heartbeat.lost:
            return False
        if time.monotonic() - self.written < PROGRESS_EVERY_SECONDS and step < self.fine_tune.progress_total:
            return True
        self.written = time.monotonic()
        return self.write(step)

    def write(self, step: int) -> bool:
        return bool(FineTune.objects.filter(pk=self.fine_tune.pk, claim=self.token, status=JobStatus.RUNNING).update(
            progress_done=step, losses=[self.losses[s] for s in sorted(self.losses)], heartbeat_at=Now()
        ))


def fine_tune_run(*, job_id: int) -> FineTuneReport:
    """Run one fine-tuning (a worker's task). A fine-tuning stopped midway (its worker
    killed) goes on from its last saved step; a failure is recorded on the row with a
    message naming the product, and fails the generation jobs waiting for it."""
    from generators.dreampaint import FineTuneStopped, Recipe, fine_tune

    token = new_claim_token()
    job = job_claim(job_id=job_id, token=token, model=FineTune)
    if job is None:
        return FineTuneReport(job_id=job_id, status="skipped")
    report = FineTuneReport(job_id=job_id, status="running")
    error, result = "", None
    try:
        with Heartbeat(job_id=job_id, token=token, model=FineTune) as heartbeat:
            base = resolve_checkpoint(job.base_checkpoint)
            if checkpoint_identity(base) != job.base_hash:
                raise GeneratorError(f"the base checkpoint {base} changed since `evaluate`; run `evaluate` again")
            images = _product_images(job)
            progress = _Progress(job, token, heartbeat)
            result = fine_tune(base, images, Recipe(**job.recipe), fine_tune_folder(job), prompt=job.prompt,
                               device=worker_device(), on_step=progress)
            report.steps, report.resumed_from = len(result.losses), result.resumed_from
            if result.resumed_from:
                log.info("fine-tuning %s: went on from step %s saved by an earlier run", job_id, result.resumed_from)
    except FineTuneStopped:
        cancelled = FineTune.objects.filter(pk=job_id, claim=token, status=JobStatus.CANCELLED).exists()
        log.warning("fine-tuning %s: %s; stopped after saving its progress", job_id,
                    "cancelled" if cancelled else "no longer this worker's")
        report.status = "cancelled" if cancelled else "claim-lost"
        return report
    except (OperationalError, InterfaceError):
        try:
            job_release(job_id=job_id, token=token, model=FineTune)
        except Exception:
            log.warning("fine-tuning %s: could not release it; the sweep will", job_id)
        raise
    except GeneratorError as exc:
        error = f"product {job.product_id!r}: {exc}"
    except Exception as exc:
        log.exception("fine-tuning %s: unexpected error", job_id)
        error = (f"product {job.product_id!r}: unexpected error fine-tuning ({type(exc).__name__}: {exc}); "
                 f"the worker log has the traceback")
    try:
        with transaction.atomic():
            waiting_experiments_lock(job)  # before the fine-tuning's row: the order `evaluate` takes them in
            if result is not None:
                FineTune.objects.filter(pk=job_id, claim=token).update(
                    size_bytes=result.size_bytes, losses=result.losses, progress_done=len(result.losses)
                )
            finished = job_finish(job_id=job_id, token=token, error=error, model=FineTune)
            if finished:
                fine_tune_ended(job)
    except (OperationalError, InterfaceError):
        job_release(job_id=job_id, token=token, model=FineTune)  # retried; its finished folder is kept
        raise
    report.status = ("failed" if error else "succeeded") if finished else "claim-lost"
    return report


def _product_images(job: FineTune):
    from PIL import Image

    samples = [s for s in Sample.objects.filter(dataset=job.dataset).order_by("sample_id") if product_key(s) == job.product_id]
    if not samples:
        raise GeneratorError(f"no sample of dataset {job.dataset} has this product; it has no images to fine-tune on")
    images, problems = [], []
    for sample in samples:
        try:
            images.append(open_image(sample.reference.name).convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            problems.append(f"sample {sample.sample_id!r} ({sample.reference.name}): {type(exc).__name__}: {exc}")
    if problems:
        raise GeneratorError("unreadable image(s): " + "; ".join(problems))
    return images


def _unused():
    used = FineTune.objects.filter(generation_jobs__method__experiment_methods__isnull=False).values("pk")
    return FineTune.objects.exclude(pk__in=used).exclude(status__in=ACTIVE_JOB_STATUSES)


def fine_tunes_unused() -> list[FineTune]:
    """Finished, failed or cancelled fine-tunings that no experiment uses any more: none of
    their generation jobs belongs to a method an experiment shows."""
    return list(_unused())


def fine_tune_delete(*, fine_tune: FineTune) -> int:
    """Delete a fine-tuning (row, weights and partial progress) if it is still unused when
    locked; the folders go once the row's deletion has committed. Bytes freed (0: kept)."""
    with transaction.atomic():
        locked = _unused().select_for_update().filter(pk=fine_tune.pk).first()
        if locked is None:
            return 0
        folder = fine_tune_folder(locked)
        paths = [path for path in (folder, folder.with_name(folder.name + ".partial")) if path.exists()]
        freed = sum(f.stat().st_size for path in paths for f in path.rglob("*") if f.is_file())
        locked.delete()
        transaction.on_commit(lambda: [shutil.rmtree(path, ignore_errors=True) for path in paths])
    return freed
