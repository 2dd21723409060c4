"""The copy-paste baseline: the reference pasted into the largest rectangle inside the mask."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from PIL import Image

from generators.families import resolve_params
from generators.images import paste_into_largest_rectangle, prepare_canvas
from generators.provenance import library_versions
from generators.types import GenerationSettings, InpaintRequest


class CopyPasteGenerator:
    """On the square canvas, the reference resized to fill (bicubic, aspect not kept) the
    mask's largest inscribed rectangle; every other pixel is the resized scene. Needs no
    weights, ignores seed, steps and guidance."""

    family = "copy_paste"

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = resolve_params(self.family, params or {})

    def describe(self) -> dict:
        return {
            "family": self.family,
            "params": dict(self.params),
            "checkpoint": None,
            "device": "cpu",
            "dtype": "uint8",
            "resize": {"scene": "bicubic", "mask": "nearest", "reference": "bicubic"},
            "versions": library_versions("numpy", "pillow"),
        }

    def generate(
        self, requests: Sequence[InpaintRequest], settings: GenerationSettings
    ) -> list[Image.Image]:
        images = []
        for request in requests:
            scene, mask = prepare_canvas(request, settings.resolution)
            images.append(paste_into_largest_rectangle(scene, mask, request.reference))
        return images
