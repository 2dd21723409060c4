"""Importing a dataset folder into storage and the database."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import uuid

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image

from evalsite.dataset_manifest import MASK_THRESHOLD, read_manifest
from evalsite.models import Dataset, Sample
from evalsite.services.storage import save_png
from generators.images import binarize_mask, outline_mask

PREVIEW_MAX_SIDE = 512


@dataclass
class ImportResult:
    dataset: Dataset
    created: bool
    warnings: list[str] = field(default_factory=list)


def dataset_import(
    *, path: str | Path, name: str, on_progress: Callable[[int, int], None] | None = None
) -> ImportResult:
    """Import a folder with manifest.csv. Re-importing identical content is a no-op;
    changed content under the same name becomes a new version of that dataset."""
    name = name.strip()
    problem = dataset_name_problem(name)
    if problem:
        raise ValueError(f"dataset name {name!r}: {problem}")
    manifest = read_manifest(path)  # raises ManifestError before anything is written
    existing = Dataset.objects.filter(name=name, content_hash=manifest.content_hash).first()
    if existing is not None:
        return ImportResult(dataset=existing, created=False, warnings=manifest.warnings)

    # Names from the content hash and row numbers only, never from user text; the random
    # part makes each attempt's files its own, so that of two concurrent imports of the
    # same data the one that loses the race deletes only what it wrote itself.
    folder = f"datasets/{manifest.content_hash[:12]}-{uuid.uuid4().hex[:8]}"
    written: list[str] = []
    try:
        # Files first, outside any transaction: on SQLite a transaction holds the one
        # write lock, and image encoding must not keep workers waiting on it.
        samples = []
        for index, row in enumerate(manifest.rows):
            stem = f"{folder}/{index:05d}"
            samples.append(
                Sample(
                    sample_id=row.sample_id,
                    product_id=row.product_id,
                    caption=row.caption,
                    category=row.category,
                    width=row.width,
                    height=row.height,
                    **_store_row_images(stem, row.files, written),
                )
            )
            if on_progress:
                on_progress(index + 1, len(manifest.rows))
        with transaction.atomic():
            dataset = Dataset.objects.create(
                name=name, content_hash=manifest.content_hash, source_path=str(Path(path).resolve())
            )
            for sample in samples:
                sample.dataset = dataset
            Sample.objects.bulk_create(samples)
    except IntegrityError:
        # Another import of the same content won meanwhile: theirs stands, ours goes.
        _delete(written)
        existing = Dataset.objects.filter(name=name, content_hash=manifest.content_hash).first()
        if existing is None:
            raise
        return ImportResult(dataset=existing, created=False, warnings=manifest.warnings)
    except BaseException:
        _delete(written)
        raise
    return ImportResult(dataset=dataset, created=True, warnings=manifest.warnings)


def _delete(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def dataset_name_problem(name: str) -> str:
    """Why `name` cannot name a dataset, or "" (it goes into experiment files and URLs)."""
    if not name:
        return "must not be empty"
    if name in (".", "..") or "@" in name or "/" in name or any(ord(c) < 32 for c in name):
        return "expected letters, digits and punctuation other than '@' and '/' (not '.' or '..')"
    return ""


def _store_row_images(stem: str, files: dict[str, Path], written: list[str]) -> dict[str, str]:
    """Store every image as PNG (lossless, one format for readers); the mask thresholded."""
    stored = {}
    with Image.open(files["scene"]) as scene_file:
        scene = scene_file.convert("RGB")
    with Image.open(files["mask"]) as mask_file:
        mask, _ = binarize_mask(mask_file.convert("L"), threshold=MASK_THRESHOLD)
    images = {"scene": scene, "mask": mask}
    for column in ("reference", "ground_truth"):
        if column in files:
            with Image.open(files[column]) as image_file:
                images[column] = image_file.convert("RGB")
    preview = outline_mask(scene, mask)
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    images["preview"] = preview
    for column, image in images.items():
        stored[column] = save_png(f"{stem}/{column}.png", image)
        written.append(stored[column])
    return stored
