"""What the diffusion families (pbe, dtc) share: load once, check settings, one pipeline
call per request (or per batch), provenance."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from generators.devices import cpu_generator, dtype_name
from generators.families import resolve_params
from generators.images import prepare_canvas
from generators.provenance import library_versions
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

CanvasPair = tuple[Image.Image, Image.Image]  # (scene, mask) on the square canvas


class PipelineGenerator:
    """A diffusion family's generator. The constructor loads the weights (once per worker);
    subclasses give `_load` and `_call_pipeline`.

    batch_invariant (default True): each request's image is exactly, bit for bit, the one
    it gets alone, whatever batch it travels in, because each request gets its own pipeline
    call. False runs one batched pipeline call over all requests: faster on a GPU, but
    batched kernels (oneDNN convolution, BLAS matmul with a different row count, vectorised
    activations) round differently, so an image may move by a unit in a few pixels.
    """

    family: str

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        params: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        batch_invariant: bool = True,
    ):
        self.params = resolve_params(self.family, params or {})
        self.checkpoint = Path(checkpoint)
        self.device = torch.device(device)
        self.batch_invariant = batch_invariant
        self.pipeline = self._load(dtype)

    def _load(self, dtype):
        raise NotImplementedError

    def _call_pipeline(
        self, requests: Sequence[InpaintRequest], canvases: Sequence[CanvasPair], settings: GenerationSettings
    ) -> list[Image.Image]:
        raise NotImplementedError

    @staticmethod
    def _sampling_kwargs(requests: Sequence[InpaintRequest], canvases: Sequence[CanvasPair],
                         settings: GenerationSettings) -> dict:
        """What every family's pipeline call takes, in diffusers' names: the canvases, the
        sampler settings, one seeded CPU generator per request."""
        return dict(
            image=[scene for scene, _ in canvases],
            mask_image=[mask for _, mask in canvases],
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            generator=[cpu_generator(request.seed) for request in requests],
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.pipeline.unet.dtype

    def describe(self) -> dict:
        return {
            "family": self.family,
            "params": dict(self.params),
            "checkpoint": str(self.checkpoint.resolve()),
            "scheduler": type(self.pipeline.scheduler).__name__,
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "batch_invariant": self.batch_invariant,
            "seeding": "one torch CPU generator per request",
            "versions": library_versions("diffusers", "torch", "transformers"),
        }

    def _check_settings(self, settings: GenerationSettings) -> None:
        multiple = self.pipeline.vae_scale_factor
        if settings.resolution <= 0 or settings.resolution % multiple:
            raise GeneratorError(f"resolution {settings.resolution} must be a positive multiple of {multiple}")
        if settings.num_inference_steps < 1:
            raise GeneratorError(f"num_inference_steps must be at least 1, got {settings.num_inference_steps}")

    def generate(self, requests: Sequence[InpaintRequest], settings: GenerationSettings) -> list[Image.Image]:
        self._check_settings(settings)
        canvases = [prepare_canvas(request, settings.resolution) for request in requests]
        if not requests:
            return []
        if not self.batch_invariant:
            return self._call_pipeline(requests, canvases, settings)
        return [
            image
            for request, canvas in zip(requests, canvases)
            for image in self._call_pipeline([request], [canvas], settings)
        ]
