"""Diffuse to Choose against Paint by Example at Stable Diffusion 1.5 scale, random weights.

    python bench/dtc_sd15.py [--device cuda] [--dtype float16] [--steps 40] [--images 3]
    python bench/dtc_sd15.py --scale tiny --device cpu      (a smoke run of this script)

No weights are needed (nothing is downloaded): SD 1.5's UNet and VAE and DINOv2 ViT-g/14 are
built from their configurations with random weights, which cost what trained ones cost.
Both pipelines share UNet, VAE, encoder and a DDIM scheduler; 512 px, guidance 5.
Figures:
  1. seconds per image (median over --images, after a warm-up) of PBE with the DINOv2
     encoder, DTC with each fusion, and DTC film with the hint computed once per image;
  2. DTC / PBE for each, the cost of the hint path;
  3. a fresh DTC (zero fusion) gives PBE's image exactly: the largest pixel difference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SD15_UNET = dict(
    sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
DINOV2_G14 = dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                  image_size=518, patch_size=14, ffn_layer="swiglufused")


def build_parts(scale: str, device, dtype):
    """unet, vae, dinov2 encoder, processor, resolution: SD 1.5 scale or the tiny test scale."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import BitImageProcessor, Dinov2Config

    from generators.reference_encoders import build_token_encoder

    if scale == "tiny":
        from generators.tiny import tiny_pbe_components

        parts = tiny_pbe_components(0, "dinov2")
        return parts["unet"], parts["vae"], parts["image_encoder"], parts["feature_extractor"], 64
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs: seconds, not minutes of CPU init
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        encoder = build_token_encoder("dinov2", Dinov2Config(**DINOV2_G14), out_features=768)
    processor = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return unet.to(dtype=dtype), vae.to(dtype=dtype), encoder.to(dtype=dtype), processor, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("sd15", "tiny"), default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import DDIMScheduler
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from generators.devices import resolve_dtype
    from generators.dtc import FUSIONS, DiffuseToChoosePipeline, DtcHintModel
    from generators.pbe import TokenPaintByExamplePipeline

    diffusers_logging.set_verbosity_error()
    device, dtype = torch.device(args.device), resolve_dtype(args.device, args.dtype)
    unet, vae, encoder, processor, size = build_parts(args.scale, device, dtype)
    unet, vae, encoder = unet.to(device).eval(), vae.to(device).eval(), encoder.to(device).eval()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pbe = TokenPaintByExamplePipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                      safety_checker=None, feature_extractor=processor, requires_safety_checker=False)
    pbe.set_progress_bar_config(disable=True)

    def dtc(fusion: str, *, trained: bool = True, once: bool = False):
        with torch.device(device):
            hint = DtcHintModel.from_unet(unet, fusion=fusion, hint_sees_noisy_latent=not once)
        if trained:  # stand-in for training: the fusion layers must not be zero (no shortcut)
            with torch.no_grad():
                for parameter in hint.fusion_layers.parameters():
                    parameter.normal_(0.0, 0.01)
        return DiffuseToChoosePipeline(unet=unet, vae=vae, image_encoder=encoder, hint=hint,
                                       scheduler=DDIMScheduler.from_config(scheduler.config), feature_extractor=processor)

    rng = np.random.RandomState(0)
    scene = Image.fromarray(rng.randint(0, 255, (size, size, 3), np.uint8))
    reference = Image.fromarray(rng.randint(0, 255, (size // 2, size // 2, 3), np.uint8))
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 8 : size // 2] = 255
    inputs = dict(example_image=[reference], image=[scene], mask_image=[Image.fromarray(mask)],
                  num_inference_steps=args.steps, guidance_scale=5.0)

    def generate(pipeline, output_type="pil"):
        result = pipeline(**inputs, generator=[torch.Generator().manual_seed(0)], output_type=output_type)
        return result.images if hasattr(result, "images") else result

    def timed(pipeline) -> list[float]:
        generate(pipeline)  # warm-up
        seconds = []
        for _ in range(args.images):
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            generate(pipeline)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - began)
        return seconds

    name = f"{args.scale}, {size} px, {args.steps} DDIM steps, guidance 5, {str(unet.dtype).removeprefix('torch.')} on {device}"
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    print(name, f"torch {torch.__version__}", sep="; ")
    with torch.no_grad():
        fresh = generate(dtc("film", trained=False), output_type="np")
        reference_image = generate(pbe, output_type="np")
    print(f"fresh DTC (zero fusion) vs PBE, largest pixel difference: {float(np.abs(fresh - reference_image).max()):.3g}")
    del fresh, reference_image

    rows = {"pbe dinov2": timed(pbe)}
    for fusion in FUSIONS:
        rows[f"dtc {fusion}"] = timed(dtc(fusion))
    rows["dtc film, hint once"] = timed(dtc("film", once=True))
    base = statistics.median(rows["pbe dinov2"])
    print(f"\n{'method':<22} {'median s/img':>12} {'min':>8} {'max':>8} {'/ pbe':>7}")
    for label, seconds in rows.items():
        median = statistics.median(seconds)
        print(f"{label:<22} {median:>12.3f} {min(seconds):>8.3f} {max(seconds):>8.3f} {median / base:>7.2f}")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
