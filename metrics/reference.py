"""Reference statistics kept on disk: the real set's Gaussian (and its covariance's square
root, which every Frechet distance against it needs) under a key the caller chooses; the
platform's is (dataset version, extractor id, resolution). Computed once, read by every
later method and worker."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from metrics.frechet import GaussianStatistics, gaussian_statistics


class ReferenceStatisticsCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"

    def get(self, key: str, features: Callable[[], np.ndarray]) -> GaussianStatistics:
        """The statistics stored under `key`, or those of features() stored now."""
        path = self._path(key)
        if path.is_file():
            with np.load(path) as stored:
                if str(stored["key"]) == key:
                    return GaussianStatistics(stored["mu"], stored["sigma"], int(stored["n"]), [stored["sigma_sqrt"]])
        statistics = gaussian_statistics(features())
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        with open(temp, "wb") as handle:
            np.savez(handle, key=np.array(key), mu=statistics.mu, sigma=statistics.sigma, n=statistics.n,
                     sigma_sqrt=statistics.sigma_sqrt())
        os.replace(temp, path)
        return statistics
