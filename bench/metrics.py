"""FID of folders: metrics/ against clean-fid's compute_fid, side by side in one run.

    .venv/bin/python bench/metrics.py [--n 1000] [--size 64]

Both sides read the same two folders of N PNG images (size x size, random), with the same
TorchScript Inception stand-in (2048 features, clean-fid's call signature), on the CPU.
clean-fid runs as a user runs it (its defaults, but device=cpu and the offline extractor).
Figures:
  1. time to the FID of one method (features of both folders, then the distance), and the
     ratio to clean-fid (target <= 1.0);
  2. time for one more method once the real set's statistics are cached on disk
     (metrics.reference: its Gaussian and its covariance's square root; read back, then the
     new folder's features and the distance), as a fraction of clean-fid's time, which
     redoes everything (target <= 0.6).
The two FIDs must agree to 1e-6 (relative), or the run fails.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_FIRST, TARGET_MORE = 1.0, 0.6


def write_folder(folder: Path, n: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    import torch
    from cleanfid import fid as cleanfid
    from cleanfid.inception_torchscript import InceptionV3W

    from metrics.extractors import InceptionExtractor
    from metrics.frechet import frechet_distance, gaussian_statistics
    from metrics.images import image_files, load_rgb
    from metrics.reference import ReferenceStatisticsCache
    from metrics.standins import build_inception_stand_in

    work = Path(tempfile.mkdtemp(prefix="evalsite-bench-metrics-"))
    build_inception_stand_in(work / "weights")
    real = write_folder(work / "real", args.n, args.size, seed=0)
    method_a = write_folder(work / "method-a", args.n, args.size, seed=1)
    method_b = write_folder(work / "method-b", args.n, args.size, seed=2)
    print(f"{args.n} images per folder, {args.size} px, stand-in Inception (2048 features), CPU, "
          f"{torch.get_num_threads()} torch threads")

    key = f"real|{args.n}|{args.size}"

    def ours_first():
        extractor = InceptionExtractor(work / "weights")
        reference = ReferenceStatisticsCache(work / "reference").get(
            key, lambda: extractor.features(load_rgb(f) for f in image_files(real))
        )
        generated = gaussian_statistics(extractor.features(load_rgb(f) for f in image_files(method_a)))
        return frechet_distance(generated, reference)

    def ours_more():
        # A later run (another process, another worker): the reference comes from disk.
        extractor = InceptionExtractor(work / "weights")
        reference = ReferenceStatisticsCache(work / "reference").get(key, lambda: sys.exit("reference not cached"))
        generated = gaussian_statistics(extractor.features(load_rgb(f) for f in image_files(method_b)))
        return frechet_distance(generated, reference)

    def theirs(folder):
        model = InceptionV3W(str(work / "weights"), download=False).eval()
        return cleanfid.compute_fid(str(folder), str(real), mode="clean", custom_feat_extractor=model,
                                    device=torch.device("cpu"), verbose=False)

    began = time.perf_counter()
    fid_a_theirs = theirs(method_a)
    t_theirs_a = time.perf_counter() - began
    began = time.perf_counter()
    fid_a = ours_first()
    t_ours_a = time.perf_counter() - began
    began = time.perf_counter()
    fid_b = ours_more()
    t_ours_b = time.perf_counter() - began
    began = time.perf_counter()
    fid_b_theirs = theirs(method_b)
    t_theirs_b = time.perf_counter() - began

    for name, ours, reference in (("method a", fid_a, fid_a_theirs), ("method b", fid_b, fid_b_theirs)):
        difference = abs(ours - reference) / abs(reference)
        print(f"{name}: FID {ours:.6f} (clean-fid {reference:.6f}, relative difference {difference:.1e})")
        if difference > 1e-6:
            sys.exit(f"{name}: the FIDs differ by {difference:.1e}")
    first, more = t_ours_a / t_theirs_a, t_ours_b / t_theirs_b
    print(f"one method:      metrics {t_ours_a:.2f} s, clean-fid {t_theirs_a:.2f} s, ratio {first:.3f} (target <= {TARGET_FIRST})")
    print(f"one more method: metrics {t_ours_b:.2f} s, clean-fid {t_theirs_b:.2f} s, ratio {more:.3f} (target <= {TARGET_MORE})")
    if first > TARGET_FIRST or more > TARGET_MORE:
        sys.exit(1)


if __name__ == "__main__":
    main()
