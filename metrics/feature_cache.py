"""Features computed once per image: stored by (extractor id, sha256 of the image file's
bytes), one .npy each, in a folder every worker shares (the platform gives it one under
MEDIA_ROOT; never site-packages or /tmp). FID, KID, their bootstrap resamples and later
comparisons all read the same features."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

from metrics.images import load_rgb


class FeatureCache:
    """Counts what it computed and what it read back (`computed`, `reused`): a resumed
    job reports how much of its work was already done."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.computed = 0
        self.reused = 0

    def _path(self, extractor, digest: str) -> Path:
        return self.folder / f"{extractor.name}-{extractor.sha256[:16]}" / digest[:2] / f"{digest}.npy"

    def features(self, extractor, files: list[Path], on_progress=None) -> np.ndarray:
        """N x dim features of `files`, computing only those not cached yet (in batches)."""
        digests = [_file_sha256(file) for file in files]
        return self._features(extractor, digests, lambda index: load_rgb(files[index]), on_progress)

    def array_features(self, extractor, images: list[np.ndarray], on_progress=None) -> np.ndarray:
        """The same for images in memory (crops), keyed by their pixels and shape."""
        digests = [_array_sha256(image) for image in images]
        return self._features(extractor, digests, lambda index: images[index], on_progress)

    def _features(self, extractor, digests: list[str], load, on_progress) -> np.ndarray:
        rows: dict[int, np.ndarray] = {}
        missing = []
        for index, digest in enumerate(digests):
            path = self._path(extractor, digest)
            if path.is_file():
                rows[index] = np.load(path)
            else:
                missing.append(index)
        # An image met twice in one call (copy-paste ignores the seed) is computed once.
        first_of: dict[str, int] = {}
        for index in missing:
            first_of.setdefault(digests[index], index)
        distinct = list(first_of.values())
        batch = max(1, extractor.batch_size)
        for start in range(0, len(distinct), batch):
            chunk = distinct[start : start + batch]
            computed = extractor.features(load(i) for i in chunk)
            for index, row in zip(chunk, computed):
                self._store(self._path(extractor, digests[index]), row)
                rows[index] = row
            self.computed += len(chunk)
            if on_progress:
                on_progress(len(rows), len(digests))
        for index in missing:
            rows.setdefault(index, rows[first_of[digests[index]]])
        self.reused += len(digests) - len(distinct)
        if not digests:
            return np.zeros((0, extractor.dim))
        return np.stack([rows[i] for i in range(len(digests))])

    @staticmethod
    def _store(path: Path, row: np.ndarray) -> None:
        """Written under a temp name and renamed: a killed writer never leaves half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        with open(temp, "wb") as handle:
            np.save(handle, row)
        os.replace(temp, path)


def _array_sha256(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
