"""The images raters see, copied once when a study is created.

Every copy is re-encoded as a plain PNG (no text chunks, no EXIF, no original file name) under
a random name, and an item's candidates share one size, so that neither the bytes nor their
metadata tell one method from another, nor the untouched scene of an attention check from an
output. Scene and outline are drawn on the experiment's canvas, where the outputs live.
"""
from __future__ import annotations

import uuid

from PIL import Image

from evalsite.models import Sample
from evalsite.services.storage import open_image, save_png
from generators.images import binarize_mask, outline_mask

REFERENCE_MAX_SIDE = 512


def _plain(image: Image.Image) -> Image.Image:
    """A fresh RGB image with the pixels only (no info dict, no palette, no ICC profile)."""
    rgb = image.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def _store(folder: str, image: Image.Image) -> str:
    return save_png(f"{folder}/{uuid.uuid4().hex}.png", _plain(image))


def item_images(*, folder: str, sample: Sample, resolution: int) -> dict[str, str]:
    """Stored names of the scene, the scene with its mask outlined, and the reference."""
    size = (resolution, resolution)
    scene = open_image(sample.scene.name).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    mask, _ = binarize_mask(open_image(sample.mask.name))
    mask = mask.resize(size, Image.Resampling.NEAREST)
    reference = open_image(sample.reference.name).convert("RGB")
    reference.thumbnail((REFERENCE_MAX_SIDE, REFERENCE_MAX_SIDE))
    return {
        "scene": _store(folder, scene),
        "scene_outlined": _store(folder, outline_mask(scene, mask)),
        "reference": _store(folder, reference),
    }


def candidate_image(*, folder: str, source: str, resolution: int) -> str:
    """A copy of a stored image (an output) at the item's candidate size."""
    image = open_image(source).convert("RGB")
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return _store(folder, image)
