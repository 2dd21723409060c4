"""Running one generation job: fill in the outputs its samples are missing."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import IntegrityError

from evalsite.models import GenerationJob, Output, Sample
from evalsite.services.experiments import resolve_checkpoint
from evalsite.services.generator_cache import get_generator, worker_device
from evalsite.services.jobs import Heartbeat, job_claim, job_finish, job_progress, new_claim_token
from evalsite.services.storage import open_image, remove_partials, save_png
from generators.types import GenerationSettings, GeneratorError, InpaintRequest, MethodSpec

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    pass


@dataclass
class JobReport:
    job_id: int
    status: str
    generated: int = 0
    skipped_existing: int = 0
    problems: list[str] = field(default_factory=list)


def output_name(job: GenerationJob, sample: Sample) -> str:
    """Deterministic, so a re-run after a crash overwrites rather than duplicates."""
    return (
        f"outputs/experiment-{job.experiment_id}/{job.method.key}/seed-{job.seed}/"
        f"{sample.pk}-{sample.sample_id}.png"
    )


def job_run(*, job_id: int) -> JobReport:
    token = new_claim_token()
    job = job_claim(job_id=job_id, token=token)
    if job is None:
        return JobReport(job_id=job_id, status="skipped")
    report = JobReport(job_id=job_id, status="running")
    try:
        with Heartbeat(job_id=job_id, token=token) as heartbeat:
            _generate_missing(job, token, heartbeat, report)
    except ClaimLost:
        log.warning("job %s: claim lost to another worker; stopped", job_id)
        report.status = "claim-lost"
        return report
    except GeneratorError as exc:
        report.problems.append(str(exc))
    except MemoryError:
        report.problems.append(_out_of_memory_message(job))
    except Exception as exc:
        if _is_cuda_oom(exc):
            report.problems.append(_out_of_memory_message(job))
        else:
            raise
    error = "\n".join(report.problems)
    job_finish(job_id=job_id, token=token, error=error)
    report.status = "failed" if error else "succeeded"
    return report


def _generate_missing(job: GenerationJob, token: str, heartbeat: Heartbeat, report: JobReport) -> None:
    experiment, method = job.experiment, job.method
    samples = list(job.samples.order_by("sample_id"))
    done_ids = set(
        Output.objects.filter(method=method, seed=job.seed, sample__in=samples).values_list("sample_id", flat=True)
    )
    missing = [s for s in samples if s.pk not in done_ids]
    report.skipped_existing = len(samples) - len(missing)
    if missing:
        remove_partials(output_name(job, missing[0]).rsplit("/", 1)[0])
    spec = MethodSpec(family=method.family, params=method.params, checkpoint=resolve_checkpoint(method.checkpoint) or None)
    settings = GenerationSettings(
        num_inference_steps=experiment.num_inference_steps,
        guidance_scale=experiment.guidance_scale,
        resolution=experiment.resolution,
    )
    done = len(done_ids)
    job_progress(job_id=job.pk, token=token, done=done)
    if not missing:
        return
    generator = get_generator(spec, batch_invariant=experiment.config.get("batch_invariant", True))
    provenance = {**generator.describe(), "settings": settings.__dict__, "worker": token}
    for start in range(0, len(missing), experiment.batch_size):
        if heartbeat.lost:
            raise ClaimLost()
        chunk = missing[start : start + experiment.batch_size]
        requests, loaded = [], []
        for sample in chunk:
            try:
                requests.append(_request_for(sample, job.seed))
                loaded.append(sample)
            except (OSError, ValueError) as exc:
                report.problems.append(
                    f"sample {sample.sample_id!r}: cannot read its images ({exc}); re-import the dataset "
                    f"or remove the sample"
                )
        if not requests:
            continue
        began = time.perf_counter()
        images = generator.generate(requests, settings)
        per_image = (time.perf_counter() - began) / len(requests)
        for sample, image in zip(loaded, images):
            name = save_png(output_name(job, sample), image)
            try:
                Output.objects.get_or_create(
                    method=method,
                    sample=sample,
                    seed=job.seed,
                    defaults=dict(
                        job=job,
                        image=name,
                        provenance={**provenance, "seed": job.seed, "batch_size": len(requests)},
                        device=worker_device(),
                        seconds=per_image,
                    ),
                )
            except IntegrityError:
                pass  # written meanwhile by a worker that also held this job: same bytes
            report.generated += 1
            done += 1
        if not job_progress(job_id=job.pk, token=token, done=done):
            raise ClaimLost()


def _request_for(sample: Sample, seed: int) -> InpaintRequest:
    return InpaintRequest(
        sample_id=sample.sample_id,
        scene=open_image(sample.scene.name).convert("RGB"),
        mask=open_image(sample.mask.name).convert("L"),
        reference=open_image(sample.reference.name).convert("RGB"),
        seed=seed,
        caption=sample.caption,
    )


def _is_cuda_oom(exc: Exception) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _out_of_memory_message(job: GenerationJob) -> str:
    experiment = job.experiment
    return (
        f"out of memory on {worker_device()} generating {experiment.batch_size} image(s) at "
        f"{experiment.resolution} px with method {job.method.key!r}; lower batch_size "
        f"(now {experiment.batch_size}) in the experiment file, or run fewer models per worker"
    )
