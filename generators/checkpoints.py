"""Checks that a checkpoint folder has the layout and the shapes its method asks for,
reading only config files (no weights, no torch), so a bad experiment file is rejected
before any work is queued. Each problem names the folder, the component and the shape."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from generators.types import GeneratorError

Layout = tuple[tuple[str, ...], ...]  # each entry: files one of which must exist

# One file, or an index of shards (large models are saved sharded).
_DIFFUSERS_WEIGHTS = tuple(f"diffusion_pytorch_model.{ext}" for ext in ("safetensors", "bin", "safetensors.index.json", "bin.index.json"))
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _component(folder: str, config: str, weights: tuple[str, ...]) -> Layout:
    return ((f"{folder}/{config}",), tuple(f"{folder}/{name}" for name in weights))


# The official Fantasy-Studio/Paint-by-Example layout (clip_cls).
PBE_LAYOUT: Layout = (
    ("model_index.json",),
    *_component("unet", "config.json", _DIFFUSERS_WEIGHTS),
    *_component("vae", "config.json", _DIFFUSERS_WEIGHTS),
    *_component("image_encoder", "config.json", _TRANSFORMERS_WEIGHTS),
    ("scheduler/scheduler_config.json",),
    ("feature_extractor/preprocessor_config.json",),
)
# Token encoders (clip_all, dinov2): image_encoder/ is a transformers CLIPVisionModel or
# Dinov2Model folder, and the projection to the UNet's width sits beside it.
TOKEN_ENCODER_LAYOUT: Layout = (*PBE_LAYOUT, *_component("image_projection", "config.json", _DIFFUSERS_WEIGHTS))
DTC_LAYOUT: Layout = (*TOKEN_ENCODER_LAYOUT, *_component("hint", "config.json", _DIFFUSERS_WEIGHTS))

# Stable Diffusion inpainting (runwayml/stable-diffusion-inpainting's layout): DreamPaint's base.
SD_INPAINT_LAYOUT: Layout = (
    ("model_index.json",),
    *_component("unet", "config.json", _DIFFUSERS_WEIGHTS),
    *_component("vae", "config.json", _DIFFUSERS_WEIGHTS),
    *_component("text_encoder", "config.json", _TRANSFORMERS_WEIGHTS),
    ("tokenizer/tokenizer_config.json",),
    ("scheduler/scheduler_config.json",),
)

PBE_PIPELINE_CLASS = "PaintByExamplePipeline"
SD_INPAINT_PIPELINE_CLASS = "StableDiffusionInpaintPipeline"
DTC_PIPELINE_CLASS = "DiffuseToChoosePipeline"
# image_encoder/config.json's model_type for each encoder kind.
ENCODER_MODEL_TYPES = {"clip_all": "clip_vision_model", "dinov2": "dinov2"}
PBE_ENCODER_ARCHITECTURE = "PaintByExampleImageEncoder"


def describe_layout(layout: Layout, name: str) -> str:
    lines = [" or ".join(alternatives) for alternatives in layout]
    return f"expected layout ({name}):\n  " + "\n  ".join(lines)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeneratorError(f"cannot read {path}: {exc}") from exc


def _check_layout(checkpoint, family: str, layout: Layout, layout_name: str) -> Path:
    described = describe_layout(layout, layout_name)
    if not checkpoint:
        raise GeneratorError(f"method family {family!r} needs a checkpoint folder; {described}")
    root = Path(checkpoint)
    if not root.is_dir():
        raise GeneratorError(f"checkpoint folder {root} does not exist; {described}")
    missing = [" or ".join(names) for names in layout if not any((root / name).is_file() for name in names)]
    if missing:
        raise GeneratorError(f"checkpoint {root} is incomplete, missing: {', '.join(missing)}; {described}")
    return root


def _check_pipeline_class(root: Path, expected: str, *, required: bool) -> None:
    found = read_json(root / "model_index.json").get("_class_name")
    if found != expected and (required or found is not None):
        raise GeneratorError(f"checkpoint {root} is a {found} checkpoint (model_index.json), expected {expected}")
    scheduler_config = root / "scheduler/scheduler_config.json"
    if not read_json(scheduler_config).get("_class_name"):
        raise GeneratorError(f"{scheduler_config} has no _class_name naming the scheduler class")


def _check_token_encoder(root: Path, encoder: str, cross_attention_dim: int) -> None:
    config = read_json(root / "image_encoder/config.json")
    expected_type = ENCODER_MODEL_TYPES[encoder]
    if config.get("model_type") != expected_type or PBE_ENCODER_ARCHITECTURE in (config.get("architectures") or ()):
        found = (config.get("architectures") or [config.get("model_type")])[0]
        raise GeneratorError(
            f"checkpoint {root}: image_encoder/ holds a {found}, encoder = {encoder!r} needs a "
            f"transformers {'Dinov2Model' if encoder == 'dinov2' else 'CLIPVisionModel'} folder"
        )
    projection = read_json(root / "image_projection/config.json")
    width = config.get("hidden_size")
    shape = (projection.get("in_features"), projection.get("out_features"))
    if shape != (width, cross_attention_dim):
        raise GeneratorError(
            f"checkpoint {root}: image_projection/ maps {shape[0]} -> {shape[1]} features; the encoder "
            f"gives {width} and the UNet's cross-attention takes {cross_attention_dim}"
        )


def check_pbe_checkpoint(checkpoint: str | Path | None, params: Mapping[str, Any] | None = None) -> Path:
    """The checkpoint folder as a Path, once its layout fits params["encoder"] (default
    clip_cls); GeneratorError naming the path, what is missing and the expected layout."""
    encoder = (params or {}).get("encoder", "clip_cls")
    if encoder == "clip_cls":
        root = _check_layout(checkpoint, "pbe", PBE_LAYOUT, "as Fantasy-Studio/Paint-by-Example")
        _check_pipeline_class(root, PBE_PIPELINE_CLASS, required=False)
        if (root / "image_projection").exists():
            raise GeneratorError(
                f"checkpoint {root} holds a token encoder (image_projection/); it is a "
                f"clip_all or dinov2 checkpoint, not encoder = 'clip_cls'"
            )
        return root
    root = _check_layout(checkpoint, "pbe", TOKEN_ENCODER_LAYOUT, f"Paint-by-Example with encoder = {encoder!r}")
    _check_pipeline_class(root, PBE_PIPELINE_CLASS, required=False)
    unet = read_json(root / "unet/config.json")
    _check_token_encoder(root, encoder, unet.get("cross_attention_dim"))
    return root


def check_sd_inpainting_checkpoint(checkpoint: str | Path | None, params: Mapping[str, Any] | None = None) -> Path:
    """DreamPaint's base: a Stable Diffusion inpainting folder with its 9-channel UNet."""
    root = _check_layout(checkpoint, "dreampaint", SD_INPAINT_LAYOUT, "Stable Diffusion inpainting, diffusers layout")
    _check_pipeline_class(root, SD_INPAINT_PIPELINE_CLASS, required=True)
    in_channels = read_json(root / "unet/config.json").get("in_channels")
    if in_channels != 9:
        raise GeneratorError(f"checkpoint {root}: unet/ takes {in_channels} input channels, an inpainting UNet takes 9")
    return root


# The UNet settings the hint encoder copies: a different value means it was built for another UNet.
HINT_UNET_FIELDS = ("block_out_channels", "layers_per_block", "down_block_types", "cross_attention_dim")


def check_dtc_checkpoint(checkpoint: str | Path | None, params: Mapping[str, Any] | None = None) -> Path:
    """As check_pbe_checkpoint, for Diffuse to Choose: the layout, the DINOv2 encoder, and a
    hint model built for this UNet with the fusion params["fusion"] asks for."""
    root = _check_layout(checkpoint, "dtc", DTC_LAYOUT, "Diffuse to Choose, see generators/dtc.py")
    _check_pipeline_class(root, DTC_PIPELINE_CLASS, required=True)
    unet = read_json(root / "unet/config.json")
    _check_token_encoder(root, "dinov2", unet.get("cross_attention_dim"))
    hint = read_json(root / "hint/config.json")
    fusion = (params or {}).get("fusion")
    if fusion is not None and hint.get("fusion") != fusion:
        raise GeneratorError(
            f"checkpoint {root}: its fusion layers are {hint.get('fusion')!r} (hint/config.json), "
            f"the method asks for fusion = {fusion!r}"
        )
    built_for = hint.get("unet_config") or {}
    for field in HINT_UNET_FIELDS:
        if _normalised(built_for.get(field)) != _normalised(unet.get(field)):
            raise GeneratorError(
                f"checkpoint {root}: hint/ was built for a UNet with {field} = {built_for.get(field)}, "
                f"unet/ has {field} = {unet.get(field)}"
            )
    return root


def _normalised(value):
    return list(value) if isinstance(value, (list, tuple)) else value
