"""FID and KID against clean-fid itself, on the same folders with the same extractor, and
the Frechet distance against an independent scipy computation."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from metrics.cli import run
from metrics.extractors import InceptionExtractor
from metrics.frechet import frechet_distance, frechet_distance_of_features, gaussian_statistics
from metrics.images import image_files, load_rgb
from metrics.kid import kernel_distance

ROOT = Path(__file__).resolve().parents[2]


def relative_difference(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def clean_fid_extractor(weights):
    from cleanfid.inception_torchscript import InceptionV3W

    return InceptionV3W(str(weights), download=False).eval()


def test_fid_equals_clean_fids_compute_fid(metric_weights, image_folders):
    from cleanfid import fid as cleanfid

    generated, real = image_folders
    ours = run(["fid", str(generated), str(real), "--weights", str(metric_weights)])
    theirs = cleanfid.compute_fid(
        str(generated), str(real), mode="clean", custom_feat_extractor=clean_fid_extractor(metric_weights),
        device=torch.device("cpu"), num_workers=0, batch_size=32, verbose=False, use_dataparallel=False,
    )
    assert ours["n_generated"] == ours["n_real"] == 24
    assert relative_difference(ours["value"], theirs) < 1e-6, (ours["value"], theirs)
    assert ours["value"] > 1.0  # the two sets differ


def test_kid_equals_clean_fids_kernel_distance_on_its_own_features(metric_weights, image_folders):
    """clean-fid's compute_kid takes no custom extractor (it would download Inception):
    its own folder features and kernel_distance are what it runs, seeded the same."""
    from cleanfid import fid as cleanfid

    generated, real = image_folders
    ours = run(["kid", str(generated), str(real), "--weights", str(metric_weights), "--seed", "3"])
    model = clean_fid_extractor(metric_weights)
    options = dict(num_workers=0, batch_size=32, device=torch.device("cpu"), mode="clean", verbose=False)
    feats_generated = cleanfid.get_folder_features(str(generated), model, **options)
    feats_real = cleanfid.get_folder_features(str(real), model, **options)
    np.random.seed(3)
    theirs = cleanfid.kernel_distance(feats_generated, feats_real)
    # Near 0, KID is a difference of large kernel sums: clean-fid's float32 arithmetic moves
    # it by a few 1e-6 (how much depends on the CPU's vector width), so its own code on the
    # same features in float64 is the tight reference, and float32 the loose one.
    np.random.seed(3)
    theirs64 = cleanfid.kernel_distance(feats_generated.astype(np.float64), feats_real.astype(np.float64))
    assert relative_difference(ours["value"], theirs64) < 1e-9, (ours["value"], theirs64)
    assert relative_difference(ours["value"], theirs) < 1e-5, (ours["value"], theirs)
    assert ours["subset_size"] == 24 and ours["subsets"] == 100 and ours["std"] >= 0


def test_our_features_equal_clean_fids(metric_weights, image_folders):
    from cleanfid import fid as cleanfid

    generated, _ = image_folders
    extractor = InceptionExtractor(metric_weights)
    ours = extractor.features(load_rgb(f) for f in image_files(generated))
    theirs = cleanfid.get_folder_features(
        str(generated), clean_fid_extractor(metric_weights), num_workers=0, batch_size=32,
        device=torch.device("cpu"), mode="clean", verbose=False,
    )
    assert ours.shape == theirs.shape == (24, 2048)
    assert np.array_equal(ours, theirs.astype(np.float64))


def independent_frechet(a, b):
    """||mu_a - mu_b||^2 + Tr(Sa) + Tr(Sb) - 2 Tr((Sa Sb)^1/2), with scipy's general
    sqrtm of the product (the library uses symmetric eigendecompositions instead)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.trace(linalg.sqrtm(sa @ sb).real))


def test_frechet_distance_equals_an_independent_scipy_computation():
    rng = np.random.RandomState(1)
    a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(loc=0.3, size=(300, 16)) @ rng.normal(size=(16, 16))
    ours = frechet_distance_of_features(a, b)
    assert relative_difference(ours, independent_frechet(a, b)) < 1e-6
    assert abs(frechet_distance_of_features(a, a)) < 1e-6
    stats = gaussian_statistics(a)
    moved = gaussian_statistics(a + 2.0)
    assert frechet_distance(moved, stats) == pytest.approx(16 * 4.0, rel=1e-9)
    # Singular covariances (fewer samples than dimensions), as small FID sets have.
    small_a, small_b = rng.normal(size=(20, 64)), rng.normal(loc=0.5, size=(25, 64))
    assert relative_difference(frechet_distance_of_features(small_a, small_b), independent_frechet(small_a, small_b)) < 1e-6


def test_kid_of_a_set_with_itself_is_near_zero_and_grows_with_a_shift():
    rng = np.random.RandomState(2)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))  # one distribution, two samples
    same = kernel_distance(a, b, num_subsets=20, max_subset_size=200)
    shifted = kernel_distance(a + 1.0, b, num_subsets=20, max_subset_size=200)
    assert abs(same.mean) < 0.05 and shifted.mean > 10 * abs(same.mean)
    assert same.std > 0 and same.subset_size == 200


def test_command_line_json_and_errors(metric_weights, image_folders, tmp_path):
    generated, real = image_folders
    done = subprocess.run(
        [sys.executable, "-m", "metrics", "fid", str(generated), str(real), "--weights", str(metric_weights), "--json"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["metric"] == "fid" and result["n_real"] == 24
    assert result["features"].startswith("inception:") and len(result["features_sha256"]) == 64
    assert result["note"] == "demo features: not comparable to published numbers"
    plain = subprocess.run(
        [sys.executable, "-m", "metrics", "fid", str(generated), str(real), "--features", "clip",
         "--weights", str(metric_weights)], cwd=ROOT, capture_output=True, text=True,
    )
    assert plain.returncode == 0 and float(plain.stdout) > 0, plain.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "metrics", "kid", str(generated), str(real), "--weights", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert missing.returncode == 2
    assert f"{tmp_path}/inception-2015-12-05.pt" in missing.stderr and "nothing is downloaded" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = subprocess.run(
        [sys.executable, "-m", "metrics", "fid", str(empty), str(real), "--weights", str(metric_weights)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert no_images.returncode == 2 and f"{empty}: no images" in no_images.stderr


def test_features_are_computed_once_per_image_and_extractor(metric_weights, image_folders, tmp_path):
    from metrics.feature_cache import FeatureCache

    generated, real = image_folders
    cache = FeatureCache(tmp_path / "features")
    extractor = InceptionExtractor(metric_weights)
    files = image_files(generated)
    first = cache.features(extractor, files)
    stored = sorted((tmp_path / "features").rglob("*.npy"))
    assert len(stored) == 24 and first.shape == (24, 2048)
    stamps = {p: p.stat().st_mtime_ns for p in stored}
    assert (cache.computed, cache.reused) == (24, 0)
    again = cache.features(extractor, files)
    assert (cache.computed, cache.reused) == (24, 24)
    assert np.array_equal(first, again)
    assert {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "features").rglob("*.npy"))} == stamps  # read, not redone
    assert np.array_equal(first, extractor.features(load_rgb(f) for f in files))
    # A copy of an image under another name is the same content: one entry.
    both = cache.features(extractor, files + [files[0]])
    assert len(list((tmp_path / "features").rglob("*.npy"))) == 24 and np.array_equal(both[-1], first[0])
    # The CLI with --cache gives the same FID as without it.
    cached = run(["fid", str(generated), str(real), "--weights", str(metric_weights), "--cache", str(tmp_path / "features")])
    plain = run(["fid", str(generated), str(real), "--weights", str(metric_weights)])
    assert cached["value"] == pytest.approx(plain["value"], rel=1e-12)


def test_images_in_memory_are_cached_by_their_pixels(metric_weights, tmp_path):
    from metrics.feature_cache import FeatureCache

    cache = FeatureCache(tmp_path / "features")
    extractor = InceptionExtractor(metric_weights)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (h, 20, 3), dtype=np.uint8) for h in (10, 30, 31)]
    first = cache.array_features(extractor, crops)
    assert np.array_equal(first, extractor.features(crops)) and cache.computed == 3
    # Same pixels again: read back. Same bytes in another shape: another image.
    again = cache.array_features(extractor, [crops[1], crops[1].reshape(20, 30, 3)])
    assert np.array_equal(again[0], first[1]) and (cache.computed, cache.reused) == (4, 1)
