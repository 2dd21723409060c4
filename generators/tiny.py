"""Tiny random-weight checkpoints, written in the official layouts so that tests and the demo
load them exactly as a real checkpoint is loaded. No downloads.

CLI: python -m generators.tiny OUT_DIR [--seed N]  (one OUT_DIR/<family>/ per family)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from transformers import BitImageProcessor, CLIPImageProcessor, CLIPVisionConfig, Dinov2Config

from generators.checkpoint_io import save_components
from generators.reference_encoders import build_token_encoder

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


def tiny_clip_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=TINY_PROJECTION_DIM,
        num_attention_heads=4,
        num_hidden_layers=5,  # the clip_cls mapper gets (5 + 1) // 5 = 1 transformer block
        image_size=TINY_ENCODER_IMAGE_SIZE,
        patch_size=4,  # (32 / 4)^2 patches + the class token = 65 tokens
    )


def tiny_dinov2_config() -> Dinov2Config:
    return Dinov2Config(
        hidden_size=48,  # another width than CLIP's, so a mix-up shows as a shape error
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=TINY_ENCODER_IMAGE_SIZE,
        patch_size=4,
    )


def tiny_image_encoder(encoder: str):
    """A random-weight reference encoder of the kind `encoder` (call under a fixed seed)."""
    if encoder == "clip_cls":
        return PaintByExampleImageEncoder(tiny_clip_config())
    config = tiny_clip_config() if encoder == "clip_all" else tiny_dinov2_config()
    return build_token_encoder(encoder, config, TINY_PROJECTION_DIM)


def tiny_feature_extractor(encoder: str):
    size = {"shortest_edge": TINY_ENCODER_IMAGE_SIZE}
    crop_size = {"height": TINY_ENCODER_IMAGE_SIZE, "width": TINY_ENCODER_IMAGE_SIZE}
    if encoder == "dinov2":  # DINOv2's own preprocessing (ImageNet mean and std), scaled down
        return BitImageProcessor(
            size=size, crop_size=crop_size, do_center_crop=True, do_convert_rgb=True,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        )
    return CLIPImageProcessor(size=size, crop_size=crop_size)


def tiny_pbe_components(seed: int = 0, encoder: str = "clip_cls") -> dict:
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
        image_encoder = tiny_image_encoder(encoder)
    scheduler = PNDMScheduler(  # the official checkpoint's scheduler settings
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "image_encoder": image_encoder,
        "scheduler": scheduler,
        "feature_extractor": tiny_feature_extractor(encoder),
    }


TOKEN_ENCODER_INDEX = {
    "clip_all": {"image_encoder": ["transformers", "CLIPVisionModel"]},
    "dinov2": {"image_encoder": ["transformers", "Dinov2Model"]},
}


def build_tiny_pbe(path: str | Path, *, seed: int = 0, encoder: str = "clip_cls") -> Path:
    """Write a tiny random-weight Paint-by-Example checkpoint to `path`: the official layout
    for clip_cls, the token-encoder layout (generators.checkpoints) for clip_all and dinov2."""
    model_index = dict(PBE_MODEL_INDEX)
    if encoder != "clip_cls":
        model_index.update(TOKEN_ENCODER_INDEX[encoder])
        model_index["image_projection"] = ["generators.reference_encoders", "ReferenceProjection"]
    return save_components(tiny_pbe_components(seed, encoder), model_index, path)


def tiny_dtc_pipeline(seed: int = 0, fusion: str = "film", *, trained: bool = True, hint_sees_noisy_latent: bool = True):
    """A tiny DTC on tiny dinov2-PBE components (the same UNet, VAE and encoder as
    build_tiny_pbe(seed=seed, encoder="dinov2")). trained=True gives the fusion layers small
    random weights, a stand-in for training, so each fusion mode draws its own images;
    False leaves them zero, as generators.dtc.build_dtc does."""
    from generators.dtc import DiffuseToChoosePipeline, DtcHintModel

    components = tiny_pbe_components(seed, "dinov2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        hint = DtcHintModel.from_unet(components["unet"], fusion=fusion, adapter_channels=(8, 8, 8),
                                      hint_sees_noisy_latent=hint_sees_noisy_latent)
        if trained:
            with torch.no_grad():
                for parameter in hint.fusion_layers.parameters():
                    parameter.normal_(0.0, 0.05)
    scheduler = DDIMScheduler(  # Stable Diffusion's DDIM settings
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    return DiffuseToChoosePipeline(
        unet=components["unet"], vae=components["vae"], image_encoder=components["image_encoder"],
        hint=hint, scheduler=scheduler, feature_extractor=components["feature_extractor"],
    )


def build_tiny_dtc(path: str | Path, *, seed: int = 0, fusion: str = "film") -> Path:
    """Write a tiny DTC checkpoint (trained-looking fusion, see tiny_dtc_pipeline) to `path`."""
    return tiny_dtc_pipeline(seed, fusion).save_pretrained(path)


def tiny_tokenizer(max_length: int = 16):
    """A CLIP tokenizer with the byte-level alphabet and one merged word, DreamBooth's rare
    identifier "sks" (one token, as in a real CLIP vocabulary); written, not downloaded."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    characters = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab.update({character + suffix: len(vocab) + i for i, character in enumerate(characters)})
    vocab.update({"sk": len(vocab), "sks</w>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[("s", "k"), ("sk", "s</w>")], model_max_length=max_length)


SD_INPAINT_MODEL_INDEX = {
    "_class_name": "StableDiffusionInpaintPipeline",
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def tiny_sd_inpainting_components(seed: int = 0) -> dict:
    """A tiny Stable Diffusion inpainting model (DreamPaint's base): PBE's tiny UNet and VAE
    shapes, a tiny CLIP text encoder and the written tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    components = tiny_pbe_components(seed)
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 3)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=TINY_PROJECTION_DIM, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
    return {"unet": components["unet"], "vae": components["vae"], "text_encoder": text_encoder,
            "tokenizer": tokenizer, "scheduler": components["scheduler"]}


def build_tiny_sd_inpainting(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny Stable Diffusion inpainting checkpoint (diffusers layout) to `path`."""
    return save_components(tiny_sd_inpainting_components(seed), SD_INPAINT_MODEL_INDEX, path)


# The checkpoints of Tables 1 and 2's rows: folder name -> builder. "+ perceptual" is a
# dinov2 checkpoint trained with another loss: here, other random weights (seed 2).
TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "pbe": build_tiny_pbe,
    "pbe_clip_all": lambda path, seed=0: build_tiny_pbe(path, seed=seed, encoder="clip_all"),
    "pbe_dinov2": lambda path, seed=0: build_tiny_pbe(path, seed=seed, encoder="dinov2"),
    "pbe_dinov2_perceptual": lambda path, seed=0: build_tiny_pbe(path, seed=seed + 2, encoder="dinov2"),
    "dtc_film": lambda path, seed=0: build_tiny_dtc(path, seed=seed, fusion="film"),
    "dtc_cross_attention": lambda path, seed=0: build_tiny_dtc(path, seed=seed, fusion="cross_attention"),
    "dtc_addition": lambda path, seed=0: build_tiny_dtc(path, seed=seed, fusion="addition"),
    "sd_inpainting": build_tiny_sd_inpainting,  # DreamPaint's base
}


def build_all(out_dir: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Every tiny checkpoint, each into out_dir/<name>/ (names: TINY_BUILDERS)."""
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
