"""Importing a dataset folder into storage and the database."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils.text import get_valid_filename
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
    if not name:
        raise ValueError("dataset name must not be empty")
    manifest = read_manifest(path)  # raises ManifestError before anything is written
    existing = Dataset.objects.filter(name=name, content_hash=manifest.content_hash).first()
    if existing is not None:
        return ImportResult(dataset=existing, created=False, warnings=manifest.warnings)

    folder = f"datasets/{get_valid_filename(name)}/{manifest.content_hash[:12]}"
    written: list[str] = []
    try:
        # Files first, outside any transaction: on SQLite a transaction holds the one
        # write lock, and image encoding must not keep workers waiting on it.
        samples = []
        for index, row in enumerate(manifest.rows):
            stem = f"{folder}/{index:05d}-{get_valid_filename(row.sample_id)}"
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
    except BaseException:
        for name_written in written:
            default_storage.delete(name_written)
        raise
    return ImportResult(dataset=dataset, created=True, warnings=manifest.warnings)


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
