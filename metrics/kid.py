"""Kernel Inception Distance: the unbiased MMD^2 with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets, as clean-fid computes it; the
spread over subsets is reported with it. Pure numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.errors import MetricError


@dataclass(frozen=True)
class KernelDistance:
    mean: float
    std: float  # over the subsets
    subsets: int
    subset_size: int


def kernel_distance(generated: np.ndarray, real: np.ndarray, *, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> KernelDistance:
    """Subsets are drawn in clean-fid's order (real first, then generated) from a seeded
    legacy RandomState, so that clean-fid's kernel_distance after np.random.seed(seed)
    draws the same ones."""
    generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    d = generated.shape[1]
    m = min(generated.shape[0], real.shape[0], max_subset_size)
    if m < 2:
        raise MetricError(f"KID needs at least 2 images on each side, got {generated.shape[0]} and {real.shape[0]}")
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets)
    for index in range(num_subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = generated[rng.choice(generated.shape[0], m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        values[index] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return KernelDistance(mean=float(values.mean()), std=float(values.std()), subsets=num_subsets, subset_size=m)
