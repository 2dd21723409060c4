"""python -m metrics fid|kid DIR_A DIR_B [--features inception|clip] [--weights DIR] [--json]

Prints the number, as clean-fid's and pytorch-fid's command lines do; --json prints all of
it (N, features and their weights' sha256, resize, KID's spread). DIR_A is the generated
set, DIR_B the real one (it matters for KID's subset draws only).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from metrics.errors import MetricError
from metrics.extractors import load_extractor
from metrics.feature_cache import FeatureCache
from metrics.frechet import frechet_distance_of_features
from metrics.images import image_files, load_rgb
from metrics.kid import kernel_distance
from metrics.weights import STAND_IN_NOTE

PROJECT_WEIGHTS = Path(__file__).resolve().parent.parent / "var" / "models"


def default_weights_dir() -> Path:
    # An entry point, like manage.py: the project's weights folder unless told otherwise.
    return Path(os.environ.get("EVALSITE_WEIGHTS_DIR") or PROJECT_WEIGHTS)


def folder_features(extractor, folder, cache: FeatureCache | None = None):
    files = image_files(folder)
    if cache is not None:
        return files, cache.features(extractor, files)
    return files, extractor.features(load_rgb(file) for file in files)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metric", choices=["fid", "kid"])
    parser.add_argument("generated", help="folder of generated images (DIR_A)")
    parser.add_argument("real", help="folder of real images (DIR_B)")
    parser.add_argument("--features", choices=["inception", "clip"], default="inception",
                        help="inception: clean-fid's FID/KID; clip: Frechet distance on CLIP ViT-B/32 embeddings "
                             "(Paint-by-Example's 'FID')")
    parser.add_argument("--weights", type=Path, default=None,
                        help="folder with inception-2015-12-05.pt / clip-vit-base-patch32/ (default: "
                             "$EVALSITE_WEIGHTS_DIR or the project's var/models)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="KID's subset draws")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder to keep each image's features in (by content hash and extractor), "
                             "so that the next run reads them instead of recomputing")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    return parser.parse_args(argv)


def compute(args: argparse.Namespace) -> dict:
    extractor = load_extractor(args.features, args.weights or default_weights_dir(), device=args.device)
    cache = FeatureCache(args.cache) if args.cache else None
    generated_files, generated = folder_features(extractor, args.generated, cache)
    real_files, real = folder_features(extractor, args.real, cache)
    result = {
        "metric": args.metric if args.features == "inception" else f"{args.metric}_clip",
        "n_generated": len(generated_files),
        "n_real": len(real_files),
        "features": extractor.id,
        "features_sha256": extractor.sha256,
        **extractor.provenance,
    }
    if args.metric == "fid":
        result["value"] = frechet_distance_of_features(generated, real)
    else:
        kid = kernel_distance(generated, real, num_subsets=args.kid_subsets,
                              max_subset_size=args.kid_subset_size, seed=args.seed)
        result.update(value=kid.mean, std=kid.std, subsets=kid.subsets, subset_size=kid.subset_size, seed=args.seed)
    if extractor.stand_in:
        result["note"] = STAND_IN_NOTE
    return result


def run(argv=None) -> dict:
    return compute(parse(argv))


def main(argv=None) -> int:
    args = parse(argv)
    try:
        result = compute(args)
    except MetricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['value']:.6f}" if result["metric"].startswith("fid") else f"{result['value']:.6f} ± {result['std']:.6f}")
        if "note" in result:
            print(f"({result['note']})", file=sys.stderr)
    return 0
