"""Plain data types shared by every generator family. No Django, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class InpaintRequest:
    """One image to generate.

    scene: RGB image to inpaint. mask: mode "L", same size as scene, 255 = region to
    fill, 0 = keep (DESIGN.md section 2). reference: RGB product photo. seed: the image
    depends only on (request, seed, settings), never on the batch it travels in.
    """

    sample_id: str
    scene: Image.Image
    mask: Image.Image
    reference: Image.Image
    seed: int
    caption: str = ""


@dataclass(frozen=True)
class GenerationSettings:
    """Per-experiment sampling settings, canonical diffusers names."""

    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    resolution: int = 512


@dataclass(frozen=True)
class MethodSpec:
    """What a generator is built from: a registry family, its parameters, a checkpoint."""

    family: str
    params: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None


class GeneratorError(Exception):
    """A failure a person must act on (bad checkpoint, bad parameters). Not retried."""
