"""Running one generation job: fill in the outputs its samples are missing."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from evalsite.models import GenerationJob, JobStatus, Output, Sample
from evalsite.services.fine_tuning import fine_tune_ready
from evalsite.services.generator_cache import generator_forget, generator_get, worker_device
from evalsite.services.jobs import (
    Heartbeat,
    job_claim,
    job_finish,
    job_may_write,
    job_progress,
    job_release,
    job_stop_cancelled,
    new_claim_token,
)
from evalsite.services.metric_requests import experiments_lock, metrics_request_when_generated
from evalsite.services.methods import (
    method_check_checkpoint,
    method_generation_settings,
    method_pixel_settings,
    method_spec,
)
from evalsite.services.storage import open_image, remove_partials, save_png
from generators.types import GeneratorError, InpaintRequest, MethodSpec

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    pass


class JobCancelled(Exception):
    pass


@dataclass
class JobReport:
    job_id: int
    status: str
    generated: int = 0
    skipped_existing: int = 0
    problems: list[str] = field(default_factory=list)


def output_name(job: GenerationJob, sample: Sample) -> str:
    """From ids only (never from user keys, which sanitise to clashing names), and
    deterministic, so a re-run after a crash overwrites rather than duplicates."""
    return f"outputs/method-{job.method_id}/seed-{job.seed}/sample-{sample.pk}.png"


def job_run(*, job_id: int) -> JobReport:
    token = new_claim_token()
    job = job_claim(job_id=job_id, token=token)
    if job is None:
        return JobReport(job_id=job_id, status="skipped")
    report = JobReport(job_id=job_id, status="running")
    spec = None
    try:
        # The heartbeat starts first: whatever raises after the claim is inside the try,
        # so the job is released or failed, never left running without a beat.
        with Heartbeat(job_id=job_id, token=token) as heartbeat:
            spec = method_spec(job.method)
            _generate_missing(job, spec, token, heartbeat, report)
    except ClaimLost:
        log.warning("job %s: claim lost to another worker; stopped", job_id)
        report.status = "claim-lost"
        return report
    except JobCancelled:
        log.info("job %s: cancelled; stopped after the batch in hand", job_id)
        job_stop_cancelled(job_id=job_id, token=token, done=report.generated + report.skipped_existing)
        report.status = "cancelled"
        return report
    except (OperationalError, InterfaceError):
        # Transient: hand the job back and let the task retry it.
        try:
            job_release(job_id=job_id, token=token)
        except Exception:
            log.warning("job %s: could not release it; the sweep will", job_id)
        raise
    except GeneratorError as exc:
        report.problems.append(str(exc))
    except Exception as exc:
        if _is_out_of_memory(exc):
            if spec is not None:
                generator_forget(spec)  # its memory is fragmented; the next job reloads it
            report.problems.append(_out_of_memory_message(job))
        else:
            log.exception("job %s: unexpected error", job_id)
            report.problems.append(
                f"unexpected error generating with method {job.method.family} {job.method.short_identity} "
                f"({type(exc).__name__}: {exc}); the worker log has the traceback"
            )
    error = "\n".join(report.problems)
    # The job's end and its experiments' metric jobs commit together: whoever sees the
    # generation finished (the page, `evaluate --wait`) also sees the metrics queued.
    try:
        with transaction.atomic():
            experiments_lock(method_id=job.method_id, dataset_id=job.dataset_id)
            finished = job_finish(job_id=job_id, token=token, error=error)
            if finished:
                _request_metrics(job)
    except (OperationalError, InterfaceError):
        job_release(job_id=job_id, token=token)  # the task retries it; its images are kept
        raise
    if not finished:
        if job_stop_cancelled(job_id=job_id, token=token, done=report.generated + report.skipped_existing):
            report.status = "cancelled"
        else:
            report.status = "claim-lost"
        return report
    report.status = "failed" if error else "succeeded"
    return report


def _request_metrics(job: GenerationJob) -> None:
    """The last job of an experiment to end queues its metrics; a problem doing so is
    logged (and rolled back alone), never charged to the images this job made."""
    try:
        with transaction.atomic():
            metrics_request_when_generated(method_id=job.method_id, dataset_id=job.dataset_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.exception("job %s: could not queue the metrics of its experiments; run compute_metrics", job.pk)


def _generate_missing(job: GenerationJob, spec: MethodSpec, token: str, heartbeat: Heartbeat, report: JobReport) -> None:
    method = job.method
    samples = list(job.samples.order_by("sample_id"))
    done_ids = set(
        Output.objects.filter(method=method, seed=job.seed, sample__in=samples).values_list("sample_id", flat=True)
    )
    missing = [s for s in samples if s.pk not in done_ids]
    report.skipped_existing = len(samples) - len(missing)
    done = len(done_ids)
    if not job_progress(job_id=job.pk, token=token, done=done):
        raise _lost_or_cancelled(job.pk, token)
    if not missing:
        return
    method_check_checkpoint(method)
    # Leftovers of killed writers; a live writer's temp file is younger than this.
    remove_partials(output_name(job, missing[0]).rsplit("/", 1)[0], older_than=settings.EVALSITE_STALE_SECONDS)
    settings_ = method_generation_settings(method)
    generator = generator_get(spec, batch_invariant=method.batch_invariant, identity=method.identity)
    if method.family == "dreampaint":  # this product's fine-tuned weights
        generator.use_fine_tune(fine_tune_ready(job))
    provenance = {
        **generator.describe(),
        "method_identity": method.identity,
        "checkpoint_hash": method.checkpoint_hash,
        "settings": method_pixel_settings(method),
        "worker": token,
    }
    # A job is one batch (at most the experiment's batch_size samples): one chunk.
    if heartbeat.lost:
        raise _lost_or_cancelled(job.pk, token)
    loaded = []
    for sample in missing:
        try:
            loaded.append((sample, _request_for(sample, job.seed)))
        except (OSError, ValueError) as exc:
            report.problems.append(
                f"sample {sample.sample_id!r}: cannot read its images ({exc}); re-import the dataset "
                f"or remove the sample"
            )
    results = _generate_chunk(generator, loaded, settings_, report)
    # The claim may have passed to another worker while we computed: never overwrite
    # what that worker finished, and write nothing once the job is no longer ours.
    if not job_may_write(job_id=job.pk, token=token):
        raise ClaimLost()
    finished = set(
        Output.objects.filter(method=method, seed=job.seed, sample__in=[s for s, _, _ in results]).values_list(
            "sample_id", flat=True
        )
    )
    rows = []
    for sample, image, seconds in results:
        if sample.pk in finished:
            continue
        rows.append(
            Output(
                method=method,
                sample=sample,
                seed=job.seed,
                job=job,
                image=save_png(output_name(job, sample), image),
                provenance={**provenance, "seed": job.seed, "batch_size": len(loaded)},
                device=worker_device(),
                seconds=seconds,
            )
        )
    # Files first, rows after: a row always points at a complete file.
    Output.objects.bulk_create(rows, ignore_conflicts=True)
    report.generated += len(rows)
    if not job_progress(job_id=job.pk, token=token, done=done + len(rows)):
        raise _lost_or_cancelled(job.pk, token)


def _lost_or_cancelled(job_id: int, token: str) -> Exception:
    cancelled = GenerationJob.objects.filter(pk=job_id, claim=token, status=JobStatus.CANCELLED).exists()
    return JobCancelled() if cancelled else ClaimLost()


def _generate_chunk(generator, loaded, settings_, report):
    """(sample, image, seconds per image) for each loaded sample. When the batch fails
    for a reason one sample can cause, the samples are tried one by one so that only
    the bad ones are reported."""
    if not loaded:
        return []
    requests = [request for _, request in loaded]
    try:
        began = time.perf_counter()
        images = generator.generate(requests, settings_)
        per_image = (time.perf_counter() - began) / len(requests)
        return [(sample, image, per_image) for (sample, _), image in zip(loaded, images)]
    except GeneratorError:
        if len(loaded) == 1:
            raise
    results = []
    for sample, request in loaded:
        try:
            began = time.perf_counter()
            (image,) = generator.generate([request], settings_)
            results.append((sample, image, time.perf_counter() - began))
        except GeneratorError as exc:
            report.problems.append(f"sample {sample.sample_id!r}: {exc}")
    return results


# Decoded inputs of the samples met last, keyed by where their files are stored (stored
# dataset files never change: their folder is named by the content hash). The jobs of one
# batch of samples (one per seed) follow each other, and decoding is not free.
_INPUT_CACHE_SIZE = 32
_inputs: OrderedDict[tuple[str, ...], InpaintRequest] = OrderedDict()
_inputs_lock = threading.Lock()


def _request_for(sample: Sample, seed: int) -> InpaintRequest:
    key = (str(settings.MEDIA_ROOT), sample.scene.name, sample.mask.name, sample.reference.name)
    with _inputs_lock:
        cached = _inputs.get(key)
        if cached is not None:
            _inputs.move_to_end(key)
    if cached is None:
        cached = InpaintRequest(
            sample_id=sample.sample_id,
            scene=open_image(sample.scene.name).convert("RGB"),
            mask=open_image(sample.mask.name).convert("L"),
            reference=open_image(sample.reference.name).convert("RGB"),
            seed=0,
            caption=sample.caption,
        )
        with _inputs_lock:
            _inputs[key] = cached
            while len(_inputs) > _INPUT_CACHE_SIZE:
                _inputs.popitem(last=False)
    # Generators never modify their inputs (PIL operations return new images).
    return replace(cached, seed=seed)


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def _out_of_memory_message(job: GenerationJob) -> str:
    method = job.method
    return (
        f"out of memory on {worker_device()} generating {job.progress_total} image(s) at "
        f"{method.resolution} px with method {method.family} {method.short_identity}; lower batch_size "
        f"(now {job.progress_total}) in the experiment file, or run fewer models per worker"
    )
