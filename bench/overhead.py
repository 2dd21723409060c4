"""Platform overhead: tiny-PBE images generated through a real Celery worker, the broker
and the database, against the same images from a plain loop over diffusers'
PaintByExamplePipeline in one process. Both sides run in this one invocation, in turns.

    .venv/bin/python bench/overhead.py [--seeds 8] [--steps 10] [--resolution 128] [--rounds 3]

The platform side is timed from creating the experiment (what `evaluate` does) until the
worker finished the last job, with a freshly started worker already waiting (as in
production; it has imported torch and diffusers, but loaded no model yet). The loop
side reads the samples' images, loads the pipeline, generates each image with its own
seeded generator and saves it as PNG.
Target: ratio <= 1.15 (exit status 1 above it). DATABASE_URL / CELERY_BROKER_URL are
honoured when set (it adds its own dataset and experiments to that database); otherwise
the embedded defaults (SQLite, filesystem broker) run in a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.15
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="images = 6 demo samples x seeds")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="evalsite-bench-"))
    os.environ.setdefault("EVALSITE_VAR_DIR", str(var))  # an entry point, like manage.py
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from evalsite.demo_data import build_demo_dataset
    from evalsite.services.datasets import dataset_import
    from evalsite.worker_process import start_worker
    from generators.tiny import build_tiny_pbe

    call_command("migrate", interactive=False, verbosity=0)
    # One checkpoint per round, with weights of its own: the worker keeps a loaded model
    # for the next job, and outputs are shared by method identity (the weights' content),
    # so a shared checkpoint would spare the platform the load and the images.
    checkpoints = [
        build_tiny_pbe(Path(settings.EVALSITE_WEIGHTS_DIR) / f"bench-pbe-{r}", seed=r) for r in range(args.rounds)
    ]
    dataset = dataset_import(path=build_demo_dataset(var / "dataset"), name=f"bench-{var.name}").dataset
    samples = list(dataset.samples.order_by("sample_id"))
    seeds = list(range(args.seeds))
    count = len(samples) * len(seeds)
    print(f"{count} images: {len(samples)} samples x {len(seeds)} seeds, tiny PBE, "
          f"{args.resolution} px, {args.steps} steps, batch {args.batch_size}")
    print(f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
          f"broker {settings.CELERY_BROKER_URL.split('://')[0]}")

    # A fresh worker per round: a warm worker keeps the model and the decoded samples of
    # the round before, which the plain loop would have to load again.
    loop_times, platform_times = [], []
    for round_number in range(args.rounds):
        out = var / f"loop-{round_number}"
        loop_times.append(_plain_loop(checkpoints[round_number], samples, seeds, args, out))
        log = var / f"worker-{round_number}.log"
        worker = start_worker(log_path=log, name=f"bench-{os.getpid()}-{round_number}")
        try:
            _wait_for_log(log, b" ready.", worker)
            seconds, experiment = _through_platform(dataset, checkpoints[round_number], seeds, args, round_number)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        platform_times.append(seconds)
        print(f"round {round_number + 1}: plain loop {loop_times[-1]:.2f} s, platform {seconds:.2f} s")
    _check_same_images(experiment, var / f"loop-{args.rounds - 1}")

    loop, platform = statistics.median(loop_times), statistics.median(platform_times)
    jobs = len(seeds) * -(-len(samples) // args.batch_size)
    print(f"median plain loop {loop:.2f} s ({loop / count * 1000:.0f} ms/image), "
          f"platform {platform:.2f} s ({platform / count * 1000:.0f} ms/image)")
    print(f"overhead {(platform - loop) / jobs * 1000:.0f} ms per job ({jobs} jobs)")
    ratio = platform / loop
    print(f"ratio platform / plain loop: {ratio:.3f}  (target <= {TARGET})")
    if ratio > TARGET:
        sys.exit(1)


def _plain_loop(checkpoint, samples, seeds, args, out: Path) -> float:
    """What a researcher would otherwise write: load the pipeline, loop, save PNGs."""
    import torch
    from PIL import Image

    from generators.pbe import load_pbe_pipeline  # diffusers' from_pretrained per component

    out.mkdir(parents=True)
    began = time.perf_counter()
    inputs = [(s, *_load(s)) for s in samples]  # read from disk, as the worker does
    pipe = load_pbe_pipeline(checkpoint, "cpu")
    size = (args.resolution, args.resolution)
    for seed in seeds:
        for sample, scene, mask, reference in inputs:
            image = pipe(
                example_image=reference,
                image=scene.resize(size, Image.Resampling.BICUBIC),
                mask_image=mask.resize(size, Image.Resampling.NEAREST),
                num_inference_steps=args.steps,
                guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
            image.save(out / f"{sample.sample_id}-{seed}.png")
    return time.perf_counter() - began


def _through_platform(dataset, checkpoint, seeds, args, round_number) -> tuple[float, object]:
    from django.db.models import Max

    from evalsite import selectors
    from evalsite.experiment_config import parse_experiment_config
    from evalsite.services.experiments import experiment_evaluate

    text = f"""
name = "bench-{dataset.pk}-{round_number}"
dataset = "{dataset.name}"
seeds = {seeds}
num_inference_steps = {args.steps}
guidance_scale = 5.0
resolution = {args.resolution}
batch_size = {args.batch_size}
[[methods]]
key = "pbe_tiny_{round_number}"
family = "pbe"
checkpoint = "{checkpoint}"
"""
    began = time.time()
    experiment = experiment_evaluate(config=parse_experiment_config(text)).experiment
    while not selectors.experiment_progress(experiment).finished:
        # Poll gently: on 2 cores a busy poller steals time from the worker's torch threads.
        time.sleep(0.25)
    # The end is when the worker finished the last job (same machine, same clock), not
    # when this poll noticed it.
    last = selectors.experiment_jobs(experiment).aggregate(last=Max("finished_at"))["last"]
    seconds = last.timestamp() - began
    failed = list(selectors.experiment_failures(experiment))
    if failed:
        raise SystemExit(f"platform jobs failed: {[job.error for job in failed]}")
    return seconds, experiment


def _load(sample):
    from evalsite.services.storage import open_image

    return (
        open_image(sample.scene.name).convert("RGB"),
        open_image(sample.mask.name).convert("L"),
        open_image(sample.reference.name).convert("RGB"),
    )


def _check_same_images(experiment, loop_folder: Path) -> None:
    import numpy as np
    from PIL import Image

    from evalsite.selectors import experiment_outputs
    from evalsite.services.storage import open_image

    outputs = experiment_outputs(experiment).select_related("sample")
    differing = [
        o for o in outputs
        if not np.array_equal(
            np.asarray(open_image(o.image.name)), np.asarray(Image.open(loop_folder / f"{o.sample.sample_id}-{o.seed}.png"))
        )
    ]
    print(f"same images: {len(outputs) - len(differing)} of {len(outputs)} pixel-identical to the plain loop's")


def _wait_for_log(path: Path, marker: bytes, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"worker exited: {path.read_text()[-3000:]}")
        if path.exists() and marker in path.read_bytes():
            return
        time.sleep(0.2)
    raise SystemExit(f"worker not ready after {timeout} s: {path.read_text()[-3000:]}")


if __name__ == "__main__":
    main()
