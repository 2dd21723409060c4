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
        """One RGB image per request, in order, each settings.resolution pixels square.

        Every family works on the same square canvas (scene resized with bicubic, mask
        with nearest), so outputs of different families line up pixel for pixel and a
        metric can crop any of them with the same resized mask."""
