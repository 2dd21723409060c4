"""DreamPaint's fine-tuning at Stable Diffusion 1.5 scale on a GPU, random weights.

    python bench/dreampaint_sd15.py [--device cuda] [--steps 30] [--resolution 512]

A Stable Diffusion 1.5 inpainting checkpoint with random weights (its UNet, VAE and CLIP
ViT-L/14 text encoder at their real sizes; a written tokenizer) is saved to a temporary
folder and fine-tuned on three catalogue-style images through generators.dreampaint, as a
worker runs it. Figures: steps per second (after the first step) in each mode, the size
of one product's fine-tuning on disk, and one 512 px DreamPaint image (seconds) with it.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dtc_sd15 import SD15_UNET, SD15_VAE  # noqa: E402  (the same SD 1.5 configurations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args()

    import diffusers
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextConfig, CLIPTextModel

    from generators.checkpoint_io import save_components
    from generators.dreampaint import DreamPaintGenerator, Recipe, fine_tune, instance_prompt
    from generators.tiny import SD_INPAINT_MODEL_INDEX, tiny_tokenizer
    from generators.types import GenerationSettings, InpaintRequest

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="evalsite-bench-dreampaint-sd15-"))
    try:
        torch.manual_seed(0)
        tokenizer = tiny_tokenizer(max_length=77)
        with torch.device(args.device):
            components = {
                "unet": UNet2DConditionModel(**SD15_UNET),
                "vae": AutoencoderKL(**SD15_VAE),
                "text_encoder": CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                             num_attention_heads=12, max_position_embeddings=77, vocab_size=49408)),
            }
        components.update(tokenizer=tokenizer, scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012,
                                                                      beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1))
        began = time.perf_counter()
        base = save_components(components, SD_INPAINT_MODEL_INDEX, work / "sd15-inpainting")
        print(f"random SD 1.5 inpainting checkpoint written in {time.perf_counter() - began:.1f} s")
        del components
        rng = np.random.RandomState(0)
        photos = []
        for _ in range(3):
            pixels = np.full((args.resolution, args.resolution, 3), 250, np.uint8)
            q = args.resolution // 4
            pixels[q : 3 * q, q : 3 * q] = rng.randint(0, 200, (2 * q, 2 * q, 3))
            photos.append(Image.fromarray(pixels))
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
        print(f"{args.resolution} px, batch 1, {args.steps} steps, float32 training, {name}, torch {torch.__version__}")
        for mode, rate in (("lora", 1e-4), ("full", 5e-6)):
            stamps = []
            torch.cuda.reset_peak_memory_stats() if args.device.startswith("cuda") else None
            recipe = Recipe(mode=mode, steps=args.steps, resolution=args.resolution, learning_rate=rate)

            def on_step(step, loss, stamps=stamps):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())
                return True

            result = fine_tune(base, photos, recipe, work / mode, prompt=instance_prompt("shoe"), device=args.device, on_step=on_step)
            per_step = statistics.median(np.diff(stamps))
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
            print(f"  {mode:<5} rank {recipe.rank if mode == 'lora' else '-':<3} {1 / per_step:6.2f} steps/s  "
                  f"{result.size_bytes / 1e6:8.1f} MB on disk  peak GPU memory {peak:.1f} GiB  "
                  f"loss first {result.losses[0]:.3f} last {result.losses[-1]:.3f}")
            generator = DreamPaintGenerator(base, params={"mode": mode}, device=args.device)
            generator.use_fine_tune(result.path)
            size = args.resolution
            mask = np.zeros((size, size), np.uint8)
            mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
            request = InpaintRequest("s", photos[0], Image.fromarray(mask), photos[1], 0)
            settings = GenerationSettings(num_inference_steps=50, guidance_scale=5.0, resolution=size)
            generator.generate([request], settings)  # warm-up
            began = time.perf_counter()
            (image,) = generator.generate([request], settings)
            print(f"        one {size} px image, 50 steps, {generator.dtype}: {time.perf_counter() - began:.2f} s, size {image.size}")
            del generator, result
            shutil.rmtree(work / mode, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
