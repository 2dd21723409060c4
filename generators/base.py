"""The protocol every generator family implements."""
from __future__ import annotations

from typing import Protocol, Sequence

from PIL import Image

from generators.types import GenerationSettings, InpaintRequest


class Generator(Protocol):
    family: str

    def describe(self) -> dict:
        """Provenance: family, parameters, checkpoint, device, dtype, library versions."""

    def generate(
        self, requests: Sequence[InpaintRequest], settings: GenerationSettings
    ) -> list[Image.Image]:
        """One RGB image per request, in order, each of size settings.resolution squared
        (or the scene's size for families that keep it, such as copy_paste)."""
