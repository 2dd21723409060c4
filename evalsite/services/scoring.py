"""Scoring an experiment's methods with the metrics library: the real set at the canvas,
the caches every worker shares under MEDIA_ROOT, one score computed on a scope (results.py
says what a scope is), and the score rows with their provenance."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image

from evalsite.models import Dataset, Output, SampleScore, Score
from evalsite.results import CLIP_BOOTSTRAP, FID_BOOTSTRAP, KID_SUBSETS, Scope, score_find
from evalsite.services.generator_cache import worker_device
from evalsite.services.storage import save_png
from generators.provenance import library_versions
from metrics.clip_score import cosine_scores, region_crop
from metrics.errors import MetricError
from metrics.extractors import Extractor, load_extractor
from metrics.feature_cache import FeatureCache
from metrics.frechet import frechet_distance, gaussian_statistics
from metrics.images import load_rgb
from metrics.kid import kernel_distance
from metrics.protocols import PROTOCOLS
from metrics.reference import ReferenceStatisticsCache
from metrics.stats import bootstrap_frechet, bootstrap_mean
from metrics.weights import STAND_IN_NOTE, clip_path, inception_path

LIBRARIES = ("evalsite", "torch", "numpy", "scipy", "clean-fid", "transformers", "Pillow")


# --- where the caches and weights are ---------------------------------------------------

def metrics_folder() -> Path:
    return Path(settings.MEDIA_ROOT) / "metrics"


def feature_cache() -> FeatureCache:
    return FeatureCache(metrics_folder() / "features")


def local_path(name: str) -> Path:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        raise MetricError(
            "metrics read images from a filesystem: set MEDIA_ROOT to a folder every worker shares "
            "(object storage is not supported for metrics yet)"
        ) from None


_extractors: dict[tuple, tuple[tuple, Extractor]] = {}
_extractors_lock = threading.Lock()


def extractor_get(name: str) -> Extractor:
    """Loaded once per worker process, and again when its weights' files change."""
    weights = Path(settings.EVALSITE_WEIGHTS_DIR)
    path = inception_path(weights) if name == "inception" else clip_path(weights)
    stamp = _stamp(path)
    key = (name, str(weights), worker_device())
    with _extractors_lock:
        cached = _extractors.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        extractor = load_extractor(name, weights, device=worker_device())
        _extractors[key] = (stamp, extractor)
        return extractor


def _stamp(path: Path) -> tuple:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


# --- the real set -------------------------------------------------------------------------

def real_set_files(dataset: Dataset, resolution: int) -> list[Path]:
    """The dataset's ground truths on the experiment's canvas (bicubic, as the scenes are
    resized for generation), written once under MEDIA_ROOT; outputs and real images are
    then compared at the same size."""
    samples = list(dataset.samples.exclude(ground_truth="").order_by("sample_id"))
    if not samples:
        raise MetricError(
            f"dataset {dataset} has no ground_truth images: FID and KID compare the outputs against them; "
            f"add a ground_truth column to its manifest.csv and import it again"
        )
    files = []
    for sample in samples:
        name = f"metrics/real/{dataset.content_hash[:12]}/{resolution}/sample-{sample.pk}.png"
        path = local_path(name)
        if not path.is_file():
            with default_storage.open(sample.ground_truth.name, "rb") as handle:
                image = Image.open(handle).convert("RGB")
            save_png(name, image.resize((resolution, resolution), Image.Resampling.BICUBIC))
        files.append(path)
    return files


# --- computing one score ------------------------------------------------------------------

@dataclass
class Computed:
    value: float
    n_generated: int
    n_real: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    std: float | None = None
    interval: str = ""
    extra: dict = field(default_factory=dict)
    per_sample: list[tuple[Output, float]] = field(default_factory=list)


def score_compute(*, metric: str, method_id: int, scope: Scope, extractor: Extractor, cache: FeatureCache,
                  on_progress=None) -> Computed:
    outputs = scope.outputs_of(method_id)
    if metric == "clip_score":
        return _clip_score(outputs, scope, extractor, cache, on_progress)
    generated = cache.features(extractor, [local_path(o.image.name) for o in outputs], on_progress)
    real_files = real_set_files(scope.dataset, scope.resolution)
    if metric == "kid":
        kid = kernel_distance(generated, cache.features(extractor, real_files), **KID_SUBSETS)
        return Computed(kid.mean, len(outputs), len(real_files), std=kid.std,
                        interval=f"standard deviation over {kid.subsets} subsets of {kid.subset_size}",
                        extra={"subsets": kid.subsets, "subset_size": kid.subset_size, "seed": KID_SUBSETS["seed"]})
    reference = ReferenceStatisticsCache(metrics_folder() / "reference")
    real = reference.get(f"{scope.dataset.content_hash}:{extractor.id}:{scope.resolution}",
                         lambda: cache.features(extractor, real_files))
    if len(outputs) < 3:
        return Computed(frechet_distance(gaussian_statistics(generated), real), len(outputs), len(real_files))
    interval = bootstrap_frechet(generated, real, **FID_BOOTSTRAP)
    return Computed(interval.value, len(outputs), len(real_files), interval.low, interval.high,
                    interval=interval.method)


CLIP_CHUNK = 64  # outputs decoded at a time: memory stays flat whatever the test set's size


def _clip_score(outputs, scope, extractor, cache, on_progress) -> Computed:
    samples = {sample.pk: sample for sample in scope.samples}
    generated = []
    for start in range(0, len(outputs), CLIP_CHUNK):
        chunk = outputs[start : start + CLIP_CHUNK]
        masks = {o.sample_id: Image.open(local_path(samples[o.sample_id].mask.name)).convert("L") for o in chunk}
        # A copy: a slice would keep the whole decoded output alive.
        crops = [region_crop(load_rgb(local_path(o.image.name)), masks[o.sample_id]).copy() for o in chunk]
        generated.append(cache.array_features(extractor, crops))
        if on_progress:
            on_progress(min(start + CLIP_CHUNK, len(outputs)), len(outputs))
    references = cache.features(extractor, [local_path(s.reference.name) for s in scope.samples])
    per_reference = np.repeat(references, len(scope.seeds), axis=0)  # sample-major, like outputs
    values = cosine_scores(np.concatenate(generated), per_reference)
    grid = values.reshape(len(scope.samples), len(scope.seeds))
    if len(scope.samples) < 2:
        computed = Computed(float(grid.mean()), len(outputs))
    else:
        interval = bootstrap_mean(grid, **CLIP_BOOTSTRAP)
        computed = Computed(interval.value, len(outputs), None, interval.low, interval.high, interval=interval.method)
    computed.per_sample = list(zip(outputs, values.tolist()))
    computed.extra = {"n_samples": len(scope.samples)}
    return computed


def score_store(*, metric: str, method_id: int, scope: Scope, scope_key: str, extractor: Extractor,
                computed: Computed) -> Score:
    """The score and its per-sample values, in one transaction; a score another worker
    stored meanwhile for the same key is kept (same inputs, same number)."""
    protocol = PROTOCOLS[metric]
    method = next(c.method for c in scope.columns if c.method_id == method_id)
    provenance = {
        "metric": metric,
        "protocol": protocol.protocol,
        "extractor": extractor.id,
        "extractor_sha256": extractor.sha256,
        "resize": extractor.provenance.get("resize", ""),
        "weights": extractor.provenance.get("file") or extractor.provenance.get("folder"),
        "device": extractor.device,
        "n_generated": computed.n_generated,
        "n_real": computed.n_real,
        "n_samples": len(scope.samples),
        "samples_in_dataset": scope.samples_in_dataset,
        "seeds": scope.seeds,
        "resolution": scope.resolution,
        "method_identity": method.identity,
        "dataset": str(scope.dataset),
        "interval": computed.interval,
        "libraries": library_versions(*LIBRARIES),
        **computed.extra,
    }
    if extractor.stand_in:
        provenance["note"] = STAND_IN_NOTE
    try:
        with transaction.atomic():
            score = Score.objects.create(
                method_id=method_id, dataset=scope.dataset, metric=metric, scope=scope_key,
                value=computed.value, ci_low=computed.ci_low, ci_high=computed.ci_high, std=computed.std,
                n_generated=computed.n_generated, n_real=computed.n_real, extractor=extractor.id,
                extractor_sha256=extractor.sha256, protocol=protocol.protocol, seeds=scope.seeds,
                stand_in=extractor.stand_in, provenance=provenance,
            )
            SampleScore.objects.bulk_create(
                SampleScore(score=score, sample_id=o.sample_id, seed=o.seed, output=o, value=v)
                for o, v in computed.per_sample
            )
    except IntegrityError:
        score = score_find(method_id=method_id, metric=metric, scope_key=scope_key, extractor_sha256=extractor.sha256)
        if score is None:
            raise
    return score
