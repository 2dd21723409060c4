"""Paint by Example (Yang et al., CVPR 2023) through diffusers' PaintByExamplePipeline, with
the reference encoders of DTC's Table 2 (generators.reference_encoders)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import diffusers
import torch
from diffusers import AutoencoderKL, PaintByExamplePipeline, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image
from transformers import AutoImageProcessor, CLIPImageProcessor, CLIPVisionConfig

from generators.checkpoints import check_pbe_checkpoint, read_json
from generators.devices import resolve_dtype
from generators.pipeline_generator import CanvasPair, PipelineGenerator
from generators.reference_encoders import encode_reference, load_token_encoder
from generators.strict_loading import load_strictly
from generators.types import GenerationSettings, GeneratorError, InpaintRequest

UNET_IN_CHANNELS = 9  # 4 noisy latent + 4 masked-scene latent + 1 mask


class TokenPaintByExamplePipeline(PaintByExamplePipeline):
    """PaintByExamplePipeline with a token encoder (clip_all, dinov2). The parent's
    _encode_image assumes one token per reference; everything else is the parent's."""

    def _encode_image(self, image, device, num_images_per_prompt, do_classifier_free_guidance):
        if not isinstance(image, torch.Tensor):
            image = self.feature_extractor(images=image, return_tensors="pt").pixel_values
        return encode_reference(
            self.image_encoder, image.to(device), do_classifier_free_guidance, copies=num_images_per_prompt
        )


def scheduler_class(root: Path) -> type[SchedulerMixin]:
    config_path = root / "scheduler" / "scheduler_config.json"
    name = read_json(config_path)["_class_name"]
    found = getattr(diffusers, name, None)
    if not (isinstance(found, type) and issubclass(found, SchedulerMixin)):
        raise GeneratorError(f"{config_path}: _class_name {name!r} is not a diffusers scheduler")
    return found


def load_components(root: Path, loaders: dict) -> dict:
    """{name: loader(root / name)}; GeneratorError naming the folder when one fails."""
    components = {}
    for name, load in loaders.items():
        try:
            components[name] = load(str(root / name))
        except GeneratorError:
            raise
        except Exception as exc:  # any failure here means an unusable checkpoint
            raise GeneratorError(f"cannot load {root / name}: {type(exc).__name__}: {exc}") from exc
    return components


def diffusion_loaders(root: Path, dtype: torch.dtype) -> dict:
    """Loaders of the parts every inpainting checkpoint here has: UNet, VAE, scheduler."""
    return {
        "unet": lambda path: load_strictly(UNet2DConditionModel, path, "UNet", dtype=dtype),
        "vae": lambda path: load_strictly(AutoencoderKL, path, "VAE", dtype=dtype),
        "scheduler": lambda path: scheduler_class(root).from_pretrained(path, local_files_only=True),
    }


def check_unet_fits(root: Path, unet: UNet2DConditionModel, image_encoder) -> None:
    """The UNet is a 9-channel inpainting UNet whose cross-attention takes the encoder's width."""
    if unet.config.in_channels != UNET_IN_CHANNELS:
        raise GeneratorError(
            f"{root / 'unet'}: in_channels is {unet.config.in_channels}, an inpainting UNet "
            f"of this kind has {UNET_IN_CHANNELS}"
        )
    if unet.config.cross_attention_dim != image_encoder.proj_size:
        raise GeneratorError(
            f"{root}: unet cross_attention_dim {unet.config.cross_attention_dim} does not match "
            f"the image encoder's projection size {image_encoder.proj_size}"
        )


def load_pbe_pipeline(
    checkpoint_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    *,
    encoder: str = "clip_cls",
) -> PaintByExamplePipeline:
    """Load a Paint-by-Example checkpoint, component by component.

    PaintByExamplePipeline.from_pretrained fails on saved PBE pipelines with diffusers 0.42
    (model_index.json names PaintByExampleImageEncoder, which `diffusers` does not export),
    so each component is loaded from its subfolder and the pipeline is built directly. The
    clip_cls encoder's config is read as the CLIPVisionConfig it is (its config_class would
    read it as a full CLIPConfig). The safety checker is never loaded.
    """
    root = check_pbe_checkpoint(checkpoint_dir, {"encoder": encoder})
    dtype = resolve_dtype(device, dtype)
    loaders = diffusion_loaders(root, dtype)
    if encoder == "clip_cls":
        loaders["image_encoder"] = lambda path: load_strictly(
            PaintByExampleImageEncoder, path, "clip_cls encoder", config=CLIPVisionConfig.from_pretrained(path), dtype=dtype
        )
        loaders["feature_extractor"] = lambda path: CLIPImageProcessor.from_pretrained(path, local_files_only=True)
        pipeline_class = PaintByExamplePipeline
    else:
        loaders["image_encoder"] = lambda _: load_token_encoder(encoder, root, dtype)
        loaders["feature_extractor"] = lambda path: AutoImageProcessor.from_pretrained(path, local_files_only=True)
        pipeline_class = TokenPaintByExamplePipeline
    components = load_components(root, loaders)
    check_unet_fits(root, components["unet"], components["image_encoder"])
    pipeline = pipeline_class(**components, safety_checker=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)  # callers report their own progress
    return pipeline.to(device)


class PbeGenerator(PipelineGenerator):
    """Paint by Example with the encoder params["encoder"] names (see PipelineGenerator)."""

    family = "pbe"

    def _load(self, dtype) -> PaintByExamplePipeline:
        return load_pbe_pipeline(self.checkpoint, self.device, dtype, encoder=self.params["encoder"])

    def _call_pipeline(
        self, requests: Sequence[InpaintRequest], canvases: Sequence[CanvasPair], settings: GenerationSettings
    ) -> list[Image.Image]:
        # The pipeline takes the output size from the image (height and width are not
        # used), so the canvas already has the resolution; it inverts the mask itself
        # (white = fill, as ours).
        output = self.pipeline(
            example_image=[request.reference.convert("RGB") for request in requests],
            height=settings.resolution,
            width=settings.resolution,
            output_type="pil",
            **self._sampling_kwargs(requests, canvases, settings),
        )
        return output.images
