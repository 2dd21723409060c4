"""Fixtures for the generators library tests: tiny random-weight models, no Django."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generators.types import InpaintRequest


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP threads spinning against another
    busy process on a small machine slow each image from ~40 ms to seconds."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_pbe_checkpoint(tmp_path_factory):
    from generators.tiny import build_tiny_pbe

    return build_tiny_pbe(tmp_path_factory.mktemp("checkpoints") / "pbe", seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict:
    """Every tiny checkpoint of generators.tiny (Tables 1 and 2's rows), by folder name."""
    from generators.tiny import build_all

    return build_all(tmp_path_factory.mktemp("tiny-all"))


@pytest.fixture(scope="session")
def tiny_pbe_generator(tiny_pbe_checkpoint):
    from generators.pbe import PbeGenerator

    return PbeGenerator(tiny_pbe_checkpoint, device="cpu")


def random_rgb(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A noisy colour image; size is (width, height) as PIL has it."""
    width, height = size
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """Binary L mask, white (fill) inside box = (left, top, right, bottom)."""
    width, height = size
    pixels = np.zeros((height, width), dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 255
    return Image.fromarray(pixels)


def _make_request(seed: int, size=(64, 64), box=(12, 10, 50, 40), sample_id=None) -> InpaintRequest:
    """A request whose images depend only on `seed`."""
    rng = np.random.default_rng(1000 + seed)
    return InpaintRequest(
        sample_id=sample_id or f"sample-{seed}",
        scene=random_rgb(rng, size),
        mask=box_mask(size, box),
        reference=random_rgb(rng, (40, 56)),
        seed=seed,
    )


@pytest.fixture
def make_request():
    """make_request(seed, size=(64, 64), box=(left, top, right, bottom)) -> InpaintRequest."""
    return _make_request
