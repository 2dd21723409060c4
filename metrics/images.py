"""Images in, arrays out: what clean-fid reads from a folder, read the way it reads it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from metrics.errors import MetricError

# clean-fid's own list (cleanfid.utils.EXTENSIONS), so that a folder means the same set.
EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}


def image_files(folder: str | Path) -> list[Path]:
    """Every image below `folder`, sorted (clean-fid's order), by lower-case extension."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MetricError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in EXTENSIONS)
    if not files:
        raise MetricError(f"{folder}: no images ({', '.join(sorted(EXTENSIONS))}) found")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    """uint8 H x W x 3; greyscale and RGBA become RGB as clean-fid converts them."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise MetricError(f"{path}: not a readable image ({exc})") from None


def to_rgb_array(image) -> np.ndarray:
    """A PIL image or an array, as uint8 H x W x 3."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise MetricError(f"expected a uint8 H x W x 3 image, got {array.dtype} {array.shape}")
    return array
