import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generators.checkpoints import check_dtc_checkpoint, check_pbe_checkpoint
from generators.pbe import load_pbe_pipeline
from generators.tiny import TINY_BUILDERS, build_tiny_pbe, tiny_pbe_components

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dicts_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_round_trip_loads_exactly_what_was_built(tiny_pbe_checkpoint):
    built = tiny_pbe_components(seed=0)
    loaded = load_pbe_pipeline(tiny_pbe_checkpoint)
    for name in ("unet", "vae", "image_encoder"):
        assert state_dicts_equal(built[name], getattr(loaded, name)), name
    def settings(config):
        return {key: value for key, value in config.items() if not key.startswith("_")}

    assert settings(loaded.scheduler.config) == settings(built["scheduler"].config)
    assert loaded.feature_extractor.to_dict() == built["feature_extractor"].to_dict()
    # The encoder's config comes back as the vision config it is, so it computes the same.
    assert type(loaded.image_encoder.config).__name__ == "CLIPVisionConfig"
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(built["image_encoder"](pixels), loaded.image_encoder(pixels))


def test_official_layout_and_model_index(tiny_pbe_checkpoint):
    assert check_pbe_checkpoint(tiny_pbe_checkpoint) == tiny_pbe_checkpoint
    model_index = json.loads((tiny_pbe_checkpoint / "model_index.json").read_text())
    assert model_index["_class_name"] == "PaintByExamplePipeline"
    assert model_index["image_encoder"] == ["paint_by_example", "PaintByExampleImageEncoder"]
    assert model_index["scheduler"] == ["diffusers", "PNDMScheduler"]
    assert not list(tiny_pbe_checkpoint.parent.glob(".pbe-*")), "temporary build folder left behind"


def test_weights_depend_only_on_the_seed():
    same = tiny_pbe_components(seed=0)["unet"], tiny_pbe_components(seed=0)["unet"]
    assert state_dicts_equal(*same)
    assert not state_dicts_equal(tiny_pbe_components(seed=0)["unet"], tiny_pbe_components(seed=1)["unet"])


def test_rebuild_replaces_a_checkpoint_but_not_other_folders(tmp_path):
    path = build_tiny_pbe(tmp_path / "pbe", seed=1)
    build_tiny_pbe(path, seed=2)
    rebuilt = load_pbe_pipeline(path)
    assert state_dicts_equal(rebuilt.unet, tiny_pbe_components(seed=2)["unet"])

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        build_tiny_pbe(precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pbe", "precious"]


def test_cli_builds_every_family(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "generators.tiny", str(tmp_path / "models")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines == [[name, str(tmp_path / "models" / name)] for name in TINY_BUILDERS]
    check_pbe_checkpoint(tmp_path / "models" / "pbe")
    check_pbe_checkpoint(tmp_path / "models" / "pbe_clip_all", {"encoder": "clip_all"})
    for encoder in ("pbe_dinov2", "pbe_dinov2_perceptual"):
        check_pbe_checkpoint(tmp_path / "models" / encoder, {"encoder": "dinov2"})
    for fusion in ("film", "cross_attention", "addition"):
        check_dtc_checkpoint(tmp_path / "models" / f"dtc_{fusion}", {"fusion": fusion})
