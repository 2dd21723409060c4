"""DreamPaint's per-product fine-tuning: steps per second and what one product costs on disk.

    .venv/bin/python bench/dreampaint_fine_tune.py [--steps 40] [--resolution 64] [--repeats 3] [--threads 1]

Figures:
  1. fine-tuning steps per second at tiny size on the CPU (a tiny random-weight Stable
     Diffusion inpainting model, generators.tiny), LoRA (rank 4) and full, interleaved
     repeats (median, min, max); the ratio full / LoRA in time per step;
  2. the size on disk of one product's fine-tuning in each mode (tiny);
  3. at Stable Diffusion 1.5 scale (its UNet built on the meta device: no weights, no
     memory), the size of one product's LoRA adapter in float32 for ranks 4, 16, 32 (the
     default) and 64, and of a full UNet, which is what `mode = full` stores per product.
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

from dtc_sd15 import SD15_UNET  # noqa: E402  (Stable Diffusion 1.5's UNet configuration)

def catalogue_photos(resolution: int):
    import numpy as np
    from PIL import Image

    photos = []
    for seed in range(3):
        pixels = np.full((resolution, resolution, 3), 250, np.uint8)
        quarter = resolution // 4
        pixels[quarter : 3 * quarter, quarter : 3 * quarter] = np.random.RandomState(seed).randint(0, 200, (2 * quarter, 2 * quarter, 3))
        photos.append(Image.fromarray(pixels))
    return photos


def sd15_sizes() -> dict[str, int]:
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from generators.dreampaint import LORA_TARGETS

    sizes = {}
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        sizes["full UNet"] = sum(p.numel() for p in unet.parameters()) * 4
        for rank in (4, 16, 32, 64):
            unet = UNet2DConditionModel(**SD15_UNET)
            unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS))
            sizes[f"LoRA rank {rank}"] = sum(p.numel() for n, p in unet.named_parameters() if "lora" in n) * 4
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import diffusers
    import torch
    import transformers

    from generators.dreampaint import Recipe, fine_tune, instance_prompt
    from generators.tiny import build_tiny_sd_inpainting

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="evalsite-bench-dreampaint-"))
    try:
        base = build_tiny_sd_inpainting(work / "sd_inpainting")
        photos = catalogue_photos(args.resolution)
        recipes = {
            "lora": Recipe(mode="lora", steps=args.steps, rank=4, resolution=args.resolution, learning_rate=1e-3),
            "full": Recipe(mode="full", steps=args.steps, resolution=args.resolution, learning_rate=1e-4),
        }
        seconds = {mode: [] for mode in recipes}
        sizes = {}
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            for mode, recipe in recipes.items():
                out = work / f"{mode}-{repeat}"
                timings = []
                # Steps only: loading the base and saving the result are timed apart from them.
                began = [0.0]

                def on_step(step, loss, timings=timings, began=began):
                    now = time.perf_counter()
                    if step > 1:
                        timings.append(now - began[0])
                    began[0] = now
                    return True

                result = fine_tune(base, photos, recipe, out, prompt=instance_prompt("product"), on_step=on_step)
                sizes[mode] = result.size_bytes
                if repeat:
                    seconds[mode].append(statistics.median(timings))
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"tiny Stable Diffusion inpainting, {args.resolution} px, batch 1, {args.steps} steps x {args.repeats} repeats, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"\n{'mode':<6} {'steps/s (median)':>17} {'min':>8} {'max':>8} {'size on disk':>14}")
    for mode, values in seconds.items():
        rates = sorted(1 / value for value in values)
        print(f"{mode:<6} {statistics.median(rates):>17.1f} {rates[0]:>8.1f} {rates[-1]:>8.1f} {sizes[mode] / 1e6:>11.2f} MB")
    pairs = [full / lora for full, lora in zip(seconds["full"], seconds["lora"])]
    print(f"\nfull / LoRA, time per step: {statistics.median(seconds['full']) / statistics.median(seconds['lora']):.2f} "
          f"(per repeat: min {min(pairs):.2f}, max {max(pairs):.2f})")
    print("\nStable Diffusion 1.5 scale, one product on disk (float32):")
    for name, size in sd15_sizes().items():
        print(f"  {name:<14} {size / 1e6:>9.1f} MB")


if __name__ == "__main__":
    main()
