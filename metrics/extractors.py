"""Feature extractors over local weights: Inception (clean-fid's TorchScript file, its
"clean" resize) and CLIP image embeddings (a transformers CLIP folder). Each has an id
that names its weights' sha256, so cached features and stored numbers say what made them."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from metrics.errors import MetricError
from metrics.weights import STAND_IN_MARK, clip_path, inception_path, sha256_of

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224


@dataclass
class Extractor:
    name: str  # "inception" or "clip"
    sha256: str
    stand_in: bool
    dim: int
    device: str = "cpu"
    batch_size: int = 32
    provenance: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.sha256[:16]}"

    def features(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """float64 N x dim features of uint8 H x W x 3 images, in batches."""
        batch, out = [], []
        for image in images:
            batch.append(self._prepare(image))
            if len(batch) == self.batch_size:
                out.append(self._embed(batch))
                batch = []
        if batch:
            out.append(self._embed(batch))
        if not out:
            return np.zeros((0, self.dim))
        return np.concatenate(out).astype(np.float64)

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _embed(self, batch: Sequence[torch.Tensor]) -> np.ndarray:
        raise NotImplementedError


class InceptionExtractor(Extractor):
    """clean-fid's mode "clean": PIL bicubic resize to 299 in float, no quantisation, then
    the TorchScript network's `layers` on [-1, 1] inputs (through clean-fid's own wrapper)."""

    def __init__(self, weights_dir, *, device: str = "cpu", batch_size: int = 32):
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        path = inception_path(weights_dir)
        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice
                warnings.simplefilter("ignore", FutureWarning)
                model = InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()
        except RuntimeError as exc:
            raise MetricError(f"{path}: not a TorchScript Inception file ({exc})") from None
        super().__init__(
            name="inception", sha256=sha256_of(path), stand_in=bool(getattr(model.base, STAND_IN_MARK, False)),
            dim=2048, device=device, batch_size=batch_size,
            provenance={"file": path.name, "resize": "clean (PIL bicubic, float, 299 x 299)"},
        )
        self.model = model
        self._resize = build_resizer("clean")

    def _prepare(self, image):
        return torch.from_numpy(self._resize(image).transpose((2, 0, 1))).contiguous()

    def _embed(self, batch):
        with torch.no_grad():
            return self.model(torch.stack(batch).to(self.device)).cpu().numpy()


class ClipExtractor(Extractor):
    """CLIP image embeddings (the projection output): bicubic resize to 224 x 224, CLIP
    normalisation. With transformers 5, get_image_features returns an output object whose
    pooler_output holds the projected embedding."""

    def __init__(self, weights_dir, *, device: str = "cpu", batch_size: int = 32):
        from transformers import CLIPModel

        path = clip_path(weights_dir)
        try:
            model = CLIPModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise MetricError(f"{path}: not a loadable transformers CLIP folder ({exc})") from None
        super().__init__(
            name="clip", sha256=sha256_of(path), stand_in=bool(getattr(model.config, STAND_IN_MARK, False)),
            dim=model.config.projection_dim, device=device, batch_size=batch_size,
            provenance={"folder": path.name, "resize": f"PIL bicubic to {CLIP_SIZE} x {CLIP_SIZE}, CLIP-normalised"},
        )
        self.model = model
        self._mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self._std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def _prepare(self, image):
        resized = Image.fromarray(image).resize((CLIP_SIZE, CLIP_SIZE), Image.Resampling.BICUBIC)
        tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32).transpose((2, 0, 1))) / 255.0
        return (tensor - self._mean) / self._std

    def _embed(self, batch):
        with torch.no_grad():
            output = self.model.get_image_features(pixel_values=torch.stack(batch).to(self.device))
        embeddings = output.pooler_output if hasattr(output, "pooler_output") else output
        return embeddings.cpu().numpy()


EXTRACTORS = {"inception": InceptionExtractor, "clip": ClipExtractor}


def load_extractor(name: str, weights_dir, *, device: str = "cpu") -> Extractor:
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise MetricError(f"unknown features {name!r}; expected one of {', '.join(EXTRACTORS)}") from None
    return factory(weights_dir, device=device)
