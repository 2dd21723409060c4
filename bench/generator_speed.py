"""Generator cost at tiny size on the CPU: seconds per image of each family, and the cost
of DTC's hint path against PBE.

    .venv/bin/python bench/generator_speed.py [--steps 8] [--resolution 64] [--images 4] [--repeats 5] [--threads 1]

Every checkpoint is a tiny random-weight one (generators.tiny), built into a temporary folder.
Figures:
  1. seconds per image (median, min, max over the repeats) of copy_paste, pbe (clip_cls,
     clip_all, dinov2) and dtc (film, cross_attention, addition), as checkpoints ship them;
  2. DTC / PBE like for like: the tiny DTC shares UNet, VAE and DINOv2 encoder with
     pbe_dinov2, but ships DDIM where PBE ships PNDM (which also runs one more UNet step), so
     PBE is timed here with the DTC checkpoint's DDIM scheduler. Ratio of the medians and
     per repeat (min, median, max), for the hint run every step (hint_sees_noisy_latent,
     the default) and once per image (hint_sees_noisy_latent=False).
Every generator runs once per repeat, in turns, so drift in the machine's speed hits all
alike. Exit status 1 when a generator fails.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PBE_DDIM, DTC_ONCE = "pbe dinov2 + DDIM", "dtc film, hint once"


def make_requests(count: int, size: int) -> list:
    from generators.types import InpaintRequest

    rng = np.random.RandomState(0)
    requests = []
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.randint(0, size // 2, 2)
        mask[top : top + size // 2, left : left + size // 3] = 255
        requests.append(InpaintRequest(
            sample_id=f"s{i}", seed=i, mask=Image.fromarray(mask, "L"),
            scene=Image.fromarray(rng.randint(0, 255, (size, size, 3), np.uint8)),
            reference=Image.fromarray(rng.randint(0, 255, (size // 2, size // 2, 3), np.uint8)),
        ))
    return requests


def count_evaluations(generator, request, settings) -> str:
    """Generate one image, counting UNet (and hint encoder) evaluations: the check that the
    pair compared runs the same denoising steps."""
    pipeline = getattr(generator, "pipeline", None)
    parts = {"unet": pipeline.unet.conv_out} if pipeline is not None else {}
    if hasattr(pipeline, "hint"):
        parts["hint"] = pipeline.hint.conv_in
    counts = dict.fromkeys(parts, 0)
    hooks = [module.register_forward_hook(lambda *_, key=key: counts.update({key: counts[key] + 1}))
             for key, module in parts.items()]
    try:
        generator.generate([request], settings)
    finally:
        for hook in hooks:
            hook.remove()
    return " + ".join(f"{count}" if key == "unet" else f"{count} {key}" for key, count in counts.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--images", type=int, default=4, help="images per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="time only this generator (a row's name; repeatable), e.g. to time each as a whole process")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evalsite-bench-generators-"))
    try:
        failed = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def run(args, work: Path) -> list[str]:
    import diffusers
    import torch
    import transformers
    from diffusers import DDIMScheduler

    from generators.registry import build_generator
    from generators.tiny import build_all, tiny_dtc_pipeline
    from generators.types import GenerationSettings, MethodSpec

    torch.set_num_threads(args.threads)
    # Loading bars and PaintByExamplePipeline's deprecation notice would bury the table.
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    paths = build_all(work)
    paths["dtc_film_once"] = tiny_dtc_pipeline(0, "film", hint_sees_noisy_latent=False).save_pretrained(work / "dtc_film_once")
    specs = {
        "copy_paste": MethodSpec(family="copy_paste"),
        **{f"pbe {encoder}": MethodSpec(family="pbe", params={"encoder": encoder}, checkpoint=str(paths[name]))
           for encoder, name in [("clip_cls", "pbe"), ("clip_all", "pbe_clip_all"), ("dinov2", "pbe_dinov2")]},
        **{f"dtc {fusion}": MethodSpec(family="dtc", params={"fusion": fusion}, checkpoint=str(paths[f"dtc_{fusion}"]))
           for fusion in ("film", "cross_attention", "addition")},
        PBE_DDIM: MethodSpec(family="pbe", params={"encoder": "dinov2"}, checkpoint=str(paths["pbe_dinov2"])),
        DTC_ONCE: MethodSpec(family="dtc", params={"fusion": "film"}, checkpoint=str(paths["dtc_film_once"])),
    }
    if args.only:
        unknown = set(args.only) - set(specs)
        if unknown:
            sys.exit(f"--only: unknown {', '.join(sorted(unknown))}; rows: {', '.join(specs)}")
        specs = {name: spec for name, spec in specs.items() if name in args.only}
    settings = GenerationSettings(num_inference_steps=args.steps, guidance_scale=5.0, resolution=args.resolution)
    requests = make_requests(args.images, args.resolution * 2)
    print(f"{args.images} images x {args.repeats} repeats, {args.resolution} px, {args.steps} steps, "
          f"guidance 5, {args.threads} thread(s), torch {torch.__version__}")

    generators, evaluations, failed = {}, {}, []
    for name, spec in specs.items():
        try:
            generator = build_generator(spec)
            if name == PBE_DDIM:
                generator.pipeline.scheduler = DDIMScheduler.from_pretrained(paths["dtc_film"] / "scheduler")
            evaluations[name] = count_evaluations(generator, requests[0], settings)  # also the warm-up
            generators[name] = generator
        except Exception:
            failed.append(name)
            print(f"FAILED to load or warm up {name}:\n{traceback.format_exc()}")
    if PBE_DDIM in generators and "dtc film" in generators:
        same = all(torch.equal(a, b) for a, b in zip(generators[PBE_DDIM].pipeline.unet.state_dict().values(),
                                                     generators["dtc film"].pipeline.unet.state_dict().values()))
        print(f"{PBE_DDIM} and dtc film share the UNet's weights: {'yes' if same else 'NO'}")

    seconds = {name: [] for name in generators}
    for _ in range(args.repeats):
        for name, generator in list(generators.items()):
            try:
                began = time.perf_counter()
                generator.generate(requests, settings)
                seconds[name].append((time.perf_counter() - began) / args.images)
            except Exception:
                del generators[name]
                failed.append(name)
                print(f"FAILED to generate with {name}:\n{traceback.format_exc()}")

    print(f"\n{'family / variant':<22} {'scheduler':<15} {'UNet evals/image':<17} {'median s/img':>12} {'min':>8} {'max':>8}")
    for name, generator in generators.items():
        times, pipeline = seconds[name], getattr(generator, "pipeline", None)
        scheduler = type(pipeline.scheduler).__name__ if pipeline is not None else "-"
        print(f"{name:<22} {scheduler:<15} {evaluations[name]:<17} {statistics.median(times):>12.4f} "
              f"{min(times):>8.4f} {max(times):>8.4f}")

    print(f"\nDTC / PBE, same UNet, VAE and encoder, DDIM, {args.steps} steps:")
    for dtc in ("dtc film", DTC_ONCE):
        if dtc not in generators or PBE_DDIM not in generators:
            print(f"  {dtc:<20} / {PBE_DDIM}: not measured (a generator failed)")
            continue
        pairs = [d / p for d, p in zip(seconds[dtc], seconds[PBE_DDIM])]
        print(f"  {dtc:<20} / {PBE_DDIM}: {statistics.median(seconds[dtc]) / statistics.median(seconds[PBE_DDIM]):.2f}"
              f"  (per repeat: min {min(pairs):.2f}, median {statistics.median(pairs):.2f}, max {max(pairs):.2f})")
    return failed


if __name__ == "__main__":
    main()
