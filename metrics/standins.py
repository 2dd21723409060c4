"""Tiny random-weight stand-ins for the metric weights, written in the real formats and
loaded through the real loaders (tests and the demo; nothing is downloaded). Every number
made with them is marked "demo features: not comparable to published numbers".

CLI: python -m metrics.standins WEIGHTS_DIR
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from metrics.weights import CLIP_FOLDER, INCEPTION_FILE, STAND_IN_MARK


class _StandInLayers(nn.Module):
    """(B, 3, 299, 299) in [-1, 1] -> (B, 2048), as the real file's `layers` submodule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, kernel_size=8, stride=8)
        self.pool = nn.AdaptiveAvgPool2d(8)  # 32 channels x 8 x 8 = 2048 features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.tanh(self.conv(x))).flatten(1)


class _StandInInception(nn.Module):
    """The call signature clean-fid's InceptionV3W uses: `layers`, and
    forward(x, return_features) resizing inside for the legacy mode."""

    def __init__(self):
        super().__init__()
        self.layers = _StandInLayers()
        self.evalsite_stand_in = True  # read back as an attribute of the loaded file

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128)


def build_inception_stand_in(weights_dir: str | Path, *, seed: int = 0) -> Path:
    path = Path(weights_dir) / INCEPTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with warnings.catch_warnings():  # TorchScript is what the real file is, deprecated or not
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.script(_StandInInception().eval())
    temp = path.with_name(f".{path.name}.partial")
    module.save(str(temp))
    temp.replace(path)
    return path


def build_clip_stand_in(weights_dir: str | Path, *, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    path = Path(weights_dir) / CLIP_FOLDER
    path.parent.mkdir(parents=True, exist_ok=True)
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=224, patch_size=32),
        projection_dim=32,
        **{STAND_IN_MARK: True},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    built = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        model.save_pretrained(built)
        if path.exists():
            shutil.rmtree(path)
        built.rename(path)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return path


def build_all(weights_dir: str | Path, *, seed: int = 0) -> dict[str, Path]:
    return {
        "inception": build_inception_stand_in(weights_dir, seed=seed),
        "clip": build_clip_stand_in(weights_dir, seed=seed),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, path in build_all(args.weights_dir, seed=args.seed).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
