"""Writing a checkpoint folder whole: built beside its destination, then renamed, so a
reader never sees a half-written checkpoint."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import diffusers

from generators.reference_encoders import TokenReferenceEncoder, save_token_encoder


def _replace_dir(built: Path, path: Path) -> None:
    """Move `built` to `path`, replacing an earlier checkpoint there but nothing else."""
    if path.exists():
        if any(path.iterdir()) and not (path / "model_index.json").is_file():
            raise FileExistsError(f"{path} exists and is not a checkpoint; not overwriting it")
        shutil.rmtree(path)
    built.rename(path)


def save_components(components: dict, model_index: dict, path: str | Path) -> Path:
    """Write a checkpoint folder: each component in its subfolder, model_index.json beside.
    Built next to its destination, then renamed: never a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        for name, component in components.items():
            if isinstance(component, TokenReferenceEncoder):
                save_token_encoder(component, built)
            else:
                component.save_pretrained(built / name)
        model_index = {**model_index, "_diffusers_version": diffusers.__version__}
        (built / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
        _replace_dir(built, path)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return path


