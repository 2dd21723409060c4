"""Region CLIP score, Paint-by-Example's protocol (reused by Diffuse-to-Choose): crop the
output to the bounding box of the mask, resize the crop and the reference to 224 x 224,
CLIP-normalise, embed with the CLIP image encoder, 100 x cosine similarity; the mean over
the test set is the table's number."""
from __future__ import annotations

import numpy as np
from PIL import Image

from metrics.errors import MetricError
from metrics.images import to_rgb_array


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right and bottom exclusive, of the pixels >= 128."""
    filled = np.asarray(mask) >= 128
    if filled.ndim == 3:
        filled = filled.any(axis=2)
    rows, cols = np.flatnonzero(filled.any(axis=1)), np.flatnonzero(filled.any(axis=0))
    if rows.size == 0:
        raise MetricError("the mask is empty: no region to score")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def region_crop(output, mask) -> np.ndarray:
    """The output cropped to the mask's bounding box. Outputs live on the square canvas:
    a mask of the scene's size is first resized (nearest) onto the output's size."""
    output = to_rgb_array(output)
    mask_image = mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask).astype(np.uint8))
    mask_image = mask_image.convert("L")
    height, width = output.shape[:2]
    if mask_image.size != (width, height):
        mask_image = mask_image.resize((width, height), Image.Resampling.NEAREST)
    left, top, right, bottom = mask_bbox(np.asarray(mask_image))
    return output[top:bottom, left:right]


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """100 x the cosine similarity of each row of `a` with the same row of `b`."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 100.0 * np.sum(a * b, axis=1)


def region_clip_scores(extractor, outputs, masks, references) -> np.ndarray:
    """Per-sample region CLIP scores with a ClipExtractor (it resizes to 224 x 224)."""
    crops = [region_crop(output, mask) for output, mask in zip(outputs, masks)]
    refs = [to_rgb_array(reference) for reference in references]
    if len(crops) != len(refs):
        raise MetricError(f"{len(crops)} outputs but {len(refs)} references")
    return cosine_scores(extractor.features(crops), extractor.features(refs))
