"""Checks that a checkpoint folder has the expected layout, reading no weights, so a bad
experiment file is rejected before any work is queued. No torch here."""
from __future__ import annotations

import json
from pathlib import Path

from generators.types import GeneratorError

# Each entry: the files one of which must exist (the official Fantasy-Studio/Paint-by-Example
# layout; safetensors or the older .bin both load).
PBE_LAYOUT: tuple[tuple[str, ...], ...] = (
    ("model_index.json",),
    ("unet/config.json",),
    ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
    ("vae/config.json",),
    ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"),
    ("image_encoder/config.json",),
    ("image_encoder/model.safetensors", "image_encoder/pytorch_model.bin"),
    ("scheduler/scheduler_config.json",),
    ("feature_extractor/preprocessor_config.json",),
)

PBE_PIPELINE_CLASS = "PaintByExamplePipeline"


def describe_layout(layout: tuple[tuple[str, ...], ...]) -> str:
    lines = [" or ".join(alternatives) for alternatives in layout]
    return "expected layout (as Fantasy-Studio/Paint-by-Example):\n  " + "\n  ".join(lines)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GeneratorError(f"cannot read {path}: {exc}") from exc


def check_pbe_checkpoint(checkpoint: str | Path | None) -> Path:
    """The checkpoint folder as a Path, once its layout is complete; GeneratorError naming
    the path, what is missing and the expected layout otherwise."""
    layout = describe_layout(PBE_LAYOUT)
    if not checkpoint:
        raise GeneratorError(f"method family 'pbe' needs a checkpoint folder; {layout}")
    root = Path(checkpoint)
    if not root.is_dir():
        raise GeneratorError(f"checkpoint folder {root} does not exist; {layout}")
    missing = [
        " or ".join(alternatives)
        for alternatives in PBE_LAYOUT
        if not any((root / name).is_file() for name in alternatives)
    ]
    if missing:
        raise GeneratorError(
            f"checkpoint {root} is incomplete, missing: {', '.join(missing)}; {layout}"
        )

    pipeline_class = read_json(root / "model_index.json").get("_class_name")
    if pipeline_class not in (None, PBE_PIPELINE_CLASS):
        raise GeneratorError(
            f"checkpoint {root} is a {pipeline_class} checkpoint (model_index.json), "
            f"expected {PBE_PIPELINE_CLASS}"
        )
    scheduler_config = root / "scheduler/scheduler_config.json"
    if not read_json(scheduler_config).get("_class_name"):
        raise GeneratorError(f"{scheduler_config} has no _class_name naming the scheduler class")
    return root
