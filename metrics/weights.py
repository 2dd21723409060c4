"""Where the metric weights live and how a missing one is reported. Nothing downloads."""
from __future__ import annotations

import hashlib
from pathlib import Path

from metrics.errors import MetricError

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_SOURCE = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
CLIP_FOLDER = "clip-vit-base-patch32"
CLIP_SOURCE = "the Hugging Face model openai/clip-vit-base-patch32 (config.json, model.safetensors, preprocessor_config.json)"
# Written into stand-in weights by metrics.standins; every number made with them says so.
STAND_IN_MARK = "evalsite_stand_in"
STAND_IN_NOTE = "demo features: not comparable to published numbers"


def inception_path(weights_dir: str | Path) -> Path:
    path = Path(weights_dir) / INCEPTION_FILE
    if not path.is_file():
        raise MetricError(
            f"Inception weights not found: {path}. Put clean-fid's TorchScript Inception file "
            f"{INCEPTION_FILE} there (published at {INCEPTION_SOURCE}); nothing is downloaded"
        )
    return path


def clip_path(weights_dir: str | Path) -> Path:
    path = Path(weights_dir) / CLIP_FOLDER
    if not (path / "config.json").is_file():
        raise MetricError(
            f"CLIP weights not found: {path}/config.json. Put a transformers CLIP ViT-B/32 folder "
            f"{CLIP_FOLDER}/ there ({CLIP_SOURCE}); nothing is downloaded"
        )
    return path


def sha256_of(path: Path) -> str:
    """Of a file, or of a folder's files (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for file in files:
        digest.update(file.relative_to(path.parent if path.is_file() else path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(8 * 1024 * 1024):
                digest.update(block)
    return digest.hexdigest()
