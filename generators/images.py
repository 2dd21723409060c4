"""Pure image and mask helpers (numpy and PIL only), shared by every family and the web UI.

Masks follow DESIGN.md section 2: white (255) = region to fill, black (0) = keep.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from generators.types import GeneratorError, InpaintRequest


@dataclass(frozen=True)
class Rect:
    """Axis-aligned pixel rectangle; bottom and right are exclusive."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), the box PIL's crop and paste take."""
        return (self.left, self.top, self.right, self.bottom)


def _as_bool_mask(mask) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be a 2-D array, got shape {array.shape}")
    return array.astype(bool, copy=False)


def largest_inscribed_rectangle(mask: np.ndarray) -> Rect:
    """The largest-area axis-aligned rectangle whose pixels are all True in `mask`.

    Row by row, each column's run of True pixels ending on that row is a histogram; a
    monotonic stack finds the largest rectangle under it, O(H * W) in all.

    Ties are broken deterministically: largest area, then smallest top, then smallest
    left, then greatest height. Every maximal rectangle is examined (a bar popped from the
    stack spans the whole interval where the histogram is at least its height), so the
    tie-break picks among all maximum-area rectangles, not just the first one found.

    Raises ValueError on an empty mask or a mask that is not 2-D.
    """
    filled = _as_bool_mask(mask)
    if not filled.any():
        raise ValueError("mask is empty: no pixel to fill, so no rectangle fits inside it")

    n_rows, n_cols = filled.shape
    run_heights = np.zeros(n_cols, dtype=np.int64)
    best_key: tuple[int, int, int, int] | None = None
    for row in range(n_rows):
        run_heights = np.where(filled[row], run_heights + 1, 0)
        # Python ints: the stack loop is scalar work, far faster on a list than on numpy.
        heights = run_heights.tolist() + [0]  # the 0 sentinel empties the stack at the end
        stack: list[int] = []  # column indices, strictly increasing heights
        for col, height in enumerate(heights):
            while stack and heights[stack[-1]] >= height:
                bar_height = heights[stack.pop()]
                if bar_height == 0:
                    continue
                left = stack[-1] + 1 if stack else 0
                width = col - left
                top = row - bar_height + 1
                key = (bar_height * width, -top, -left, bar_height)
                if best_key is None or key > best_key:
                    best_key = key
            stack.append(col)

    area, neg_top, neg_left, height = best_key
    return Rect(top=-neg_top, left=-neg_left, height=height, width=area // height)


def binarize_mask(img: Image.Image, threshold: int = 128) -> tuple[Image.Image, bool]:
    """(mode "L" mask with only 0 and 255, whether the input was already 0/255 only).

    Pixels >= threshold become 255 (fill). `was_binary` lets an importer warn about
    masks that were saved lossy (JPEG) or anti-aliased.
    """
    gray = np.asarray(img.convert("L"))
    was_binary = bool(np.isin(gray, (0, 255)).all())
    binary = np.where(gray >= threshold, 255, 0).astype(np.uint8)
    return Image.fromarray(binary), was_binary


def prepare_canvas(request: InpaintRequest, resolution: int) -> tuple[Image.Image, Image.Image]:
    """(scene RGB, binary mask L), both resolution x resolution.

    The scene is resized with bicubic, the mask with nearest (so it stays binary). Every
    family works on this canvas so that outputs line up pixel for pixel.
    """
    if request.scene.size != request.mask.size:
        raise GeneratorError(
            f"sample {request.sample_id!r}: mask size {request.mask.size} differs from "
            f"scene size {request.scene.size}; they must match"
        )
    size = (resolution, resolution)
    scene = request.scene.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    mask, _ = binarize_mask(request.mask)
    mask = mask.resize(size, Image.Resampling.NEAREST)
    if not np.asarray(mask).any():
        raise GeneratorError(
            f"sample {request.sample_id!r}: mask has no white (fill) pixel at "
            f"{resolution} x {resolution}; white = region to fill"
        )
    return scene, mask


def mask_bbox(mask) -> Rect:
    """Bounding box of the fill (non-zero) pixels of a mask (PIL image or 2-D array)."""
    filled = _as_bool_mask(np.asarray(mask.convert("L")) if isinstance(mask, Image.Image) else mask)
    rows = np.flatnonzero(filled.any(axis=1))
    cols = np.flatnonzero(filled.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty: it has no bounding box")
    return Rect(
        top=int(rows[0]),
        left=int(cols[0]),
        height=int(rows[-1] - rows[0] + 1),
        width=int(cols[-1] - cols[0] + 1),
    )


def paste_into_largest_rectangle(
    base: Image.Image, mask: Image.Image, reference: Image.Image
) -> Image.Image:
    """`base` with `reference`, resized to fill it exactly (bicubic, aspect not kept),
    pasted into the largest rectangle inscribed in the mask; other pixels untouched.

    The copy-paste baseline pastes onto the scene; DTC's hint image onto black.
    """
    if base.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from image size {base.size}")
    rect = largest_inscribed_rectangle(np.asarray(mask.convert("L")) > 0)
    patch = reference.convert("RGB").resize((rect.width, rect.height), Image.Resampling.BICUBIC)
    out = base.convert("RGB")  # convert always returns a copy
    out.paste(patch, (rect.left, rect.top))
    return out


def _erode(filled: np.ndarray) -> np.ndarray:
    """3x3 erosion; pixels beyond the border count as not filled."""
    padded = np.pad(filled, 1, constant_values=False)
    n_rows, n_cols = filled.shape
    eroded = np.ones_like(filled)
    for dr in range(3):
        for dc in range(3):
            eroded &= padded[dr : dr + n_rows, dc : dc + n_cols]
    return eroded


def outline_mask(
    scene: Image.Image,
    mask: Image.Image,
    color: tuple[int, int, int] = (255, 0, 0),
    width: int = 2,
) -> Image.Image:
    """RGB copy of `scene` with the mask's outline drawn `width` pixels thick, on the
    inner side of the boundary (so the outline never covers kept pixels)."""
    if scene.size != mask.size:
        raise ValueError(f"mask size {mask.size} differs from scene size {scene.size}")
    if width < 1:
        raise ValueError(f"outline width must be at least 1, got {width}")
    filled = np.asarray(mask.convert("L")) >= 128
    interior = filled
    for _ in range(width):
        interior = _erode(interior)
    pixels = np.array(scene.convert("RGB"))
    pixels[filled & ~interior] = color
    return Image.fromarray(pixels)
