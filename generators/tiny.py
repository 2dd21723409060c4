"""Tiny random-weight checkpoints, written in the official layouts so that tests and the demo
load them exactly as a real checkpoint is loaded. No downloads.

CLI: python -m generators.tiny OUT_DIR [--seed N]  (one OUT_DIR/<family>/ per family)
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import diffusers
import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from transformers import CLIPImageProcessor, CLIPVisionConfig

# Sizes chosen for speed: a 64 px image is an 8 x 8 latent (the VAE downsamples by 8, like
# Stable Diffusion's), and the reference is encoded at 32 px.
TINY_ENCODER_IMAGE_SIZE = 32
TINY_PROJECTION_DIM = 32

# As in the official Fantasy-Studio/Paint-by-Example model_index.json (which from_pretrained
# cannot resolve with diffusers 0.42; load_pbe_pipeline does not need it to).
PBE_MODEL_INDEX = {
    "_class_name": "PaintByExamplePipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "image_encoder": ["paint_by_example", "PaintByExampleImageEncoder"],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def tiny_pbe_components(seed: int = 0) -> dict:
    """Random-weight PBE components, the same for the same seed; global RNG left as found."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=9,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TINY_PROJECTION_DIM,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(
            sample_size=64,
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(16, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=16,
        )
        encoder_config = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=TINY_PROJECTION_DIM,
            num_attention_heads=4,
            num_hidden_layers=5,  # the mapper gets (5 + 1) // 5 = 1 transformer block
            image_size=TINY_ENCODER_IMAGE_SIZE,
            patch_size=4,
        )
        image_encoder = PaintByExampleImageEncoder(encoder_config)
    scheduler = PNDMScheduler(  # the official checkpoint's scheduler settings
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": TINY_ENCODER_IMAGE_SIZE},
        crop_size={"height": TINY_ENCODER_IMAGE_SIZE, "width": TINY_ENCODER_IMAGE_SIZE},
    )
    return {
        "unet": unet,
        "vae": vae,
        "image_encoder": image_encoder,
        "scheduler": scheduler,
        "feature_extractor": feature_extractor,
    }


def _replace_dir(built: Path, path: Path) -> None:
    """Move `built` to `path`, replacing an earlier checkpoint there but nothing else."""
    if path.exists():
        if any(path.iterdir()) and not (path / "model_index.json").is_file():
            raise FileExistsError(f"{path} exists and is not a checkpoint; not overwriting it")
        shutil.rmtree(path)
    built.rename(path)


def build_tiny_pbe(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Paint-by-Example checkpoint to `path` (official layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built next to its destination, then renamed: never a half-written checkpoint.
    built = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        for name, component in tiny_pbe_components(seed).items():
            component.save_pretrained(built / name)
        model_index = {**PBE_MODEL_INDEX, "_diffusers_version": diffusers.__version__}
        (built / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
        _replace_dir(built, path)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return path


TINY_BUILDERS: dict[str, Callable[..., Path]] = {"pbe": build_tiny_pbe}


def build_all(out_dir: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Every tiny checkpoint family available, each into out_dir/<family>/."""
    out_dir = Path(out_dir)
    return {family: build(out_dir / family, seed=seed) for family, build in TINY_BUILDERS.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m generators.tiny",
        description="Build tiny random-weight checkpoints (no downloads) into OUT_DIR/<family>/.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for family, path in build_all(args.out_dir, seed=args.seed).items():
        print(f"{family}\t{path}")


if __name__ == "__main__":
    main()
