from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metrics.standins import build_all


@pytest.fixture(scope="session")
def metric_weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("metric-weights")
    build_all(folder)
    return folder


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory) -> tuple[Path, Path]:
    """A generated and a real folder of mixed sizes and formats (PNG, JPEG, a greyscale
    image, an RGBA one), as a user's folders are."""
    root = tmp_path_factory.mktemp("folders")
    generated, real = root / "generated", root / "real"
    generated.mkdir()
    real.mkdir()
    rng = np.random.RandomState(0)
    for i in range(24):
        base = rng.randint(0, 255, (3,), dtype=np.uint8)
        size = (40 + 3 * i, 32 + 2 * (i % 5))
        noise = rng.randint(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray((base + noise).astype(np.uint8)).save(generated / f"g{i:02d}.png")
        other = rng.randint(0, 255, (size[0] // 2 + 20, size[1] + 10, 3), dtype=np.uint8)
        image = Image.fromarray(other)
        if i % 6 == 0:
            image = image.convert("L")  # greyscale
        if i % 7 == 0:
            image.convert("RGBA").save(real / f"r{i:02d}.png")
        else:
            image.convert("RGB").save(real / f"r{i:02d}.jpg", quality=90)
    return generated, real
