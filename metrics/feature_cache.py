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
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, extractor, digest: str) -> Path:
        return self.folder / f"{extractor.name}-{extractor.sha256[:16]}" / digest[:2] / f"{digest}.npy"

    def features(self, extractor, files: list[Path], on_progress=None) -> np.ndarray:
        """N x dim features of `files`, computing only those not cached yet (in batches)."""
        digests = [_file_sha256(file) for file in files]
        rows: dict[int, np.ndarray] = {}
        missing = []
        for index, digest in enumerate(digests):
            path = self._path(extractor, digest)
            if path.is_file():
                rows[index] = np.load(path)
            else:
                missing.append(index)
        batch = max(1, extractor.batch_size)
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            computed = extractor.features(load_rgb(files[i]) for i in chunk)
            for index, row in zip(chunk, computed):
                self._store(self._path(extractor, digests[index]), row)
                rows[index] = row
            if on_progress:
                on_progress(len(rows), len(files))
        if not files:
            return np.zeros((0, extractor.dim))
        return np.stack([rows[i] for i in range(len(files))])

    @staticmethod
    def _store(path: Path, row: np.ndarray) -> None:
        """Written under a temp name and renamed: a killed writer never leaves half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        with open(temp, "wb") as handle:
            np.save(handle, row)
        os.replace(temp, path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
