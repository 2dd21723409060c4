"""Paint by Example (Yang et al., CVPR 2023) through diffusers' PaintByExamplePipeline."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import diffusers
import torch
from diffusers import AutoencoderKL, PaintByExamplePipeline, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionConfig

from generators.checkpoints import check_pbe_checkpoint, read_json
from generators.devices import cpu_generator, dtype_name, resolve_dtype
from generators.families import resolve_params
from generators.images import prepare_canvas
from generators.provenance import library_versions
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

UNET_IN_CHANNELS = 9  # 4 noisy latent + 4 masked-scene latent + 1 mask


def _scheduler_class(root: Path) -> type[SchedulerMixin]:
    config_path = root / "scheduler" / "scheduler_config.json"
    name = read_json(config_path)["_class_name"]
    scheduler_class = getattr(diffusers, name, None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise GeneratorError(f"{config_path}: _class_name {name!r} is not a diffusers scheduler")
    return scheduler_class


def load_pbe_pipeline(
    checkpoint_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> PaintByExamplePipeline:
    """Load a Paint-by-Example checkpoint in the official layout, component by component.

    PaintByExamplePipeline.from_pretrained fails on saved PBE pipelines with diffusers 0.42
    (model_index.json names PaintByExampleImageEncoder, which `diffusers` does not export),
    so each component is loaded from its subfolder and the pipeline is built directly. The
    image encoder's config is read as the CLIPVisionConfig it is (its config_class would
    read it as a full CLIPConfig). The safety checker is never loaded.
    """
    root = check_pbe_checkpoint(checkpoint_dir)
    dtype = resolve_dtype(device, dtype)
    loaders = {
        "unet": lambda path: UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True),
        "vae": lambda path: AutoencoderKL.from_pretrained(path, torch_dtype=dtype, local_files_only=True),
        "image_encoder": lambda path: PaintByExampleImageEncoder.from_pretrained(
            path, config=CLIPVisionConfig.from_pretrained(path), dtype=dtype, local_files_only=True
        ),
        "scheduler": lambda path: _scheduler_class(root).from_pretrained(path, local_files_only=True),
        "feature_extractor": lambda path: CLIPImageProcessor.from_pretrained(path, local_files_only=True),
    }
    components = {}
    for name, load in loaders.items():
        try:
            components[name] = load(str(root / name))
        except GeneratorError:
            raise
        except Exception as exc:  # any failure here means an unusable checkpoint
            raise GeneratorError(f"cannot load {root / name}: {type(exc).__name__}: {exc}") from exc

    unet_config = components["unet"].config
    projection = components["image_encoder"].proj_size
    if unet_config.in_channels != UNET_IN_CHANNELS:
        raise GeneratorError(
            f"{root / 'unet'}: in_channels is {unet_config.in_channels}, a Paint-by-Example "
            f"UNet has {UNET_IN_CHANNELS}"
        )
    if unet_config.cross_attention_dim != projection:
        raise GeneratorError(
            f"{root}: unet cross_attention_dim {unet_config.cross_attention_dim} does not match "
            f"the image encoder's projection size {projection}"
        )

    pipeline = PaintByExamplePipeline(
        **components, safety_checker=None, requires_safety_checker=False
    )
    pipeline.set_progress_bar_config(disable=True)  # callers report their own progress
    return pipeline.to(device)


class PbeGenerator:
    """Paint by Example. Load once (the constructor loads the weights), generate many times.

    batch_invariant (default True): each request's image is exactly, bit for bit, the one
    it gets alone, whatever batch it travels in, because each request gets its own pipeline
    call. False runs one batched pipeline call over all requests: faster on a GPU, but
    batched kernels (oneDNN convolution, BLAS matmul with a different row count, vectorised
    activations) round differently, so an image may move by a unit in a few pixels.
    """

    family = "pbe"

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
        self.pipeline = load_pbe_pipeline(self.checkpoint, self.device, dtype)

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
            raise GeneratorError(
                f"resolution {settings.resolution} must be a positive multiple of {multiple}"
            )
        if settings.num_inference_steps < 1:
            raise GeneratorError(
                f"num_inference_steps must be at least 1, got {settings.num_inference_steps}"
            )

    def generate(
        self, requests: Sequence[InpaintRequest], settings: GenerationSettings
    ) -> list[Image.Image]:
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

    def _call_pipeline(
        self,
        requests: Sequence[InpaintRequest],
        canvases: Sequence[tuple[Image.Image, Image.Image]],
        settings: GenerationSettings,
    ) -> list[Image.Image]:
        # The pipeline takes the output size from the image (height and width are not
        # used), so the canvas already has the resolution; it inverts the mask itself
        # (white = fill, as ours).
        output = self.pipeline(
            example_image=[request.reference.convert("RGB") for request in requests],
            image=[scene for scene, _ in canvases],
            mask_image=[mask for _, mask in canvases],
            height=settings.resolution,
            width=settings.resolution,
            num_inference_steps=settings.num_inference_steps,
            guidance_scale=settings.guidance_scale,
            generator=[cpu_generator(request.seed) for request in requests],
            output_type="pil",
        )
        return output.images
